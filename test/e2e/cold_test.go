//go:build e2e

package e2e

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Issue 7, cold services beyond parking: waiting page, probe filter, learned Retry-After,
// wildcard hosts, end to end against the real API server.

var (
	browser = http.Header{
		"Accept":     {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"User-Agent": {"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"},
	}
	apiClient = http.Header{"Accept": {"application/json"}, "User-Agent": {"curl/8.14.1"}}
)

// waiting_page = true: a browser's GET for a cold service gets a self-refreshing 503 HTML
// page at once (and, with wake, wakes the workload: it is activity), while an API client on
// the same host is parked as before and released when the workload is ready.
func TestWaitingPage(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	custom := createWorkload(t, ns, "custom", "deployment")
	pod := startPod(t, "web-waiting")
	const tmpl = `<p>{{.Host}} ({{.Service}}) is starting, refresh in {{.RefreshSeconds}}s</p>`
	a := startAgimo(t, "timeout = '60s'\n"+w.Config("wake = true", "waiting_page = true")+
		custom.Config("waiting_page = true", fmt.Sprintf("waiting_page_template = %q", tmpl)), agimoOpts{})

	up := w.watchScaleUp(t)
	r := a.getWith(w.Host(), "/", browser)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Status != 503 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("browser on a cold service: %d %s %q; want 503 text/html", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	if !strings.Contains(r.Body, `http-equiv="refresh"`) || !strings.Contains(r.Body, w.Host()) {
		t.Errorf("waiting page without a meta refresh or the host:\n%s", r.Body)
	}
	if r.Header.Get("Retry-After") == "" || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("waiting page headers: Retry-After %q, Cache-Control %q; want a Retry-After and no-store",
			r.Header.Get("Retry-After"), r.Header.Get("Cache-Control"))
	}
	if r.Elapsed > time.Second {
		t.Errorf("waiting page took %s; want it at once", r.Elapsed)
	}
	// The browser's visit is activity: it counts, and it woke the workload.
	up.wait(t, 20*time.Second)
	if got := a.metric(t, fmt.Sprintf("agimo_requests_total{host=%q}", w.Host())); got != 1 {
		t.Errorf("agimo_requests_total = %v after the browser's visit; want 1", got)
	}

	// An API client and a WebSocket on the same host are held, not shown the page.
	api := a.getWithAsync(w.Host(), "/api", apiClient)
	type dialed struct {
		c   *websocket.Conn
		err error
	}
	ws := make(chan dialed, 1)
	go func() {
		c, err := dialWS(a, w.Host())
		ws <- dialed{c, err}
	}()
	a.waitParked(t, w.Host(), 2)
	// The browser reloads while the pod starts: the page again, at once; no second wake-up.
	if r := a.getWith(w.Host(), "/", browser); r.Status != 503 || r.Elapsed > time.Second {
		t.Errorf("browser reload while starting: %d after %s; want 503 at once", r.Status, r.Elapsed)
	}
	w.bootPod(t, pod)
	expectFrom(t, awaitResult(t, api, 30*time.Second), pod)
	select {
	case d := <-ws:
		if d.err != nil {
			t.Fatalf("WebSocket through a cold service with a waiting page: %v", d.err)
		}
		defer d.c.Close()
		echoWS(t, d.c, pod)
	case <-time.After(30 * time.Second):
		t.Fatal("WebSocket handshake not released")
	}
	// Ready: the browser gets the app.
	expectFrom(t, a.getWith(w.Host(), "/", browser), pod)
	if got := a.metric(t, fmt.Sprintf("agimo_wakeups_total{host=%q}", w.Host())); got != 1 {
		t.Errorf("agimo_wakeups_total = %v; want 1", got)
	}

	// waiting_page_template, on a service without wake: rendered as given.
	r = a.getWith(custom.Host(), "/", browser)
	want := fmt.Sprintf("<p>%s (custom) is starting, refresh in %s</p>", custom.Host(), r.Header.Get("Retry-After")+"s")
	if r.Status != 503 || r.Body != want {
		t.Errorf("custom waiting page: %d %q; want 503 %q", r.Status, r.Body, want)
	}
	if got := custom.replicas(t); got != 0 {
		t.Errorf("a service without wake was scaled to %d", got)
	}
}

// probe_paths / probe_user_agents: health checkers get 200 from Agimo while the service is
// cold, without waking it (even with wake = true) and without counting as requests; once
// it is up their requests are forwarded, still not counted.
func TestProbeFilter(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-probe")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config("wake = true", "probe_paths = ['/healthz', '/ping']",
		"probe_user_agents = ['kube-probe', 'UptimeRobot']"), agimoOpts{})
	series := func(name string) string { return fmt.Sprintf("%s{host=%q}", name, w.Host()) }

	probes := []struct {
		path string
		h    http.Header
	}{
		{"/healthz", apiClient},
		{"/ping?from=lb", nil},
		{"/", http.Header{"User-Agent": {"kube-probe/1.37"}}},
		{"/status", http.Header{"User-Agent": {"Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"}}},
	}
	for _, p := range probes {
		r := a.getWith(w.Host(), p.path, p.h)
		if r.Err != nil || r.Status != 200 {
			t.Fatalf("probe %s %v on a cold service: %d %v %q; want 200 from agimo", p.path, p.h, r.Status, r.Err, r.Body)
		}
		if r.Elapsed > time.Second {
			t.Errorf("probe %s took %s; want an answer at once", p.path, r.Elapsed)
		}
	}
	time.Sleep(time.Second) // room for a wrong wake-up to show
	if got := w.replicas(t); got != 0 {
		t.Errorf("probes woke the workload: spec.replicas = %d", got)
	}
	for name, want := range map[string]float64{
		"agimo_probe_requests_total": 4, "agimo_requests_total": 0, "agimo_active_requests": 0,
		"agimo_parked_requests": 0, "agimo_wakeups_total": 0,
	} {
		if got := a.metric(t, series(name)); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}

	// Up (scaled by someone else): probes are forwarded to the pod, still not counted.
	names := w.scale(t, 1)
	w.setEndpoints(t, readyEndpoint(pod, names[0]))
	eventually(t, 20*time.Second, "a probe forwarded to the pod", func() bool {
		return strings.Contains(a.get(w.Host(), "/healthz").Body, "pod="+pod.Name+" ")
	})
	expectFrom(t, a.getWith(w.Host(), "/", http.Header{"User-Agent": {"kube-probe/1.37"}}), pod)
	if got := a.metric(t, series("agimo_requests_total")); got != 0 {
		t.Errorf("agimo_requests_total = %v after forwarded probes; want 0", got)
	}
	expectFrom(t, a.get(w.Host(), "/app"), pod)
	if got := a.metric(t, series("agimo_requests_total")); got != 1 {
		t.Errorf("agimo_requests_total = %v after one ordinary request; want 1", got)
	}
}

// The 503 of a park timeout carries a Retry-After learned from the service's own cold
// starts: the default before any, then the observed park-to-release time, rounded up.
func TestRetryAfterLearned(t *testing.T) {
	const coldStart = 1600 * time.Millisecond
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-retry")
	a := startAgimo(t, w.Config("timeout = '3s'"), agimoOpts{})

	r := a.get(w.Host(), "/nothing-learned")
	if r.Status != 503 {
		t.Fatalf("status %d %q; want 503 after the timeout", r.Status, r.Body)
	}
	def := r.Header.Get("Retry-After")
	t.Logf("Retry-After before any cold start: %q", def)

	names := w.scale(t, 1)
	parked := a.getAsync(w.Host(), "/cold")
	a.waitParked(t, w.Host(), 1)
	time.Sleep(coldStart)
	w.setEndpoints(t, readyEndpoint(pod, names[0]))
	expectFrom(t, awaitResult(t, parked, 30*time.Second), pod)
	if n := a.metric(t, fmt.Sprintf("agimo_park_duration_seconds_count{host=%q}", w.Host())); n != 1 {
		t.Fatalf("agimo_park_duration_seconds_count = %v; want 1", n)
	}
	took := a.metric(t, fmt.Sprintf("agimo_park_duration_seconds_sum{host=%q}", w.Host()))
	want := strconv.Itoa(int(math.Ceil(math.Floor(took*1000) / 1000)))
	if want == def {
		t.Fatalf("the cold start (%.3fs) would give the default Retry-After %s: pick another length", took, def)
	}

	w.deleteEndpoints(t)
	r = awaitResult(t, parkOne(t, a, w.Host(), "/cold-again"), 30*time.Second)
	if r.Status != 503 {
		t.Fatalf("status %d %q; want 503 after the timeout", r.Status, r.Body)
	}
	if got := r.Header.Get("Retry-After"); got != want {
		t.Errorf("Retry-After %q after a %.3fs cold start; want %q (default was %q)", got, took, want, def)
	}
	t.Logf("Retry-After after a %.3fs cold start: %q", took, r.Header.Get("Retry-After"))
}

// host = "*.zone" matches any one label in front of zone; an exact host wins over it;
// a wildcard service wakes and routes like any other.
func TestWildcardHost(t *testing.T) {
	ns := newNamespace(t)
	wild := createWorkload(t, ns, "wild", "deployment")
	exact := createWorkload(t, ns, "exact", "deployment")
	wildPod, exactPod := startPod(t, "wild-0"), startPod(t, "exact-0")
	zone := ns + ".e2e"
	a := startAgimo(t, "timeout = '60s'\n"+wild.ConfigFor("*."+zone, "wake = true")+exact.ConfigFor("exact."+zone), agimoOpts{})
	names := exact.scale(t, 1)
	exact.setEndpoints(t, readyEndpoint(exactPod, names[0]))

	up := wild.watchScaleUp(t)
	parked := a.getAsync("app."+zone, "/")
	up.wait(t, 20*time.Second)
	wild.bootPod(t, wildPod)
	r := awaitResult(t, parked, 30*time.Second)
	expectFrom(t, r, wildPod)
	if !strings.Contains(r.Body, "host=app."+zone+" ") {
		t.Errorf("upstream saw %q; want the client's Host app.%s", r.Body, zone)
	}
	expectFrom(t, a.get("Other."+strings.ToUpper(zone)+".:8080", "/"), wildPod) // case, trailing dot, port
	eventually(t, 20*time.Second, "exact host ready", func() bool { return a.get("exact."+zone, "/").Status == 200 })
	expectFrom(t, a.get("exact."+zone, "/"), exactPod)
	for _, h := range []string{"a.b." + zone, zone, "app.x" + zone} {
		if r := a.get(h, "/"); r.Status != 404 {
			t.Errorf("host %s: %d %q; want 404 (a wildcard matches exactly one label)", h, r.Status, r.Body)
		}
	}
	if got := a.metric(t, fmt.Sprintf("agimo_requests_total{host=%q}", "*."+zone)); got != 2 {
		t.Errorf(`agimo_requests_total{host="*.%s"} = %v; want 2`, zone, got)
	}
}
