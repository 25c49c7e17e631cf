package proxy_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const coldFeatures = `
timeout = "60s"
[[services]]
host = "app.test"
type = "deployment"
namespace = "apps"
name = "app"
service_name = "app"
service_port = 80
waiting_page = true
probe_paths = ["/healthz"]
probe_user_agents = ["kube-probe", "UptimeRobot"]

[[services]]
host = "*.wild.test"
type = "deployment"
namespace = "apps"
name = "wild"
service_name = "wild"
service_port = 80

[[services]]
host = "exact.wild.test"
type = "deployment"
namespace = "apps"
name = "exact"
service_name = "exact"
service_port = 80
`

// Wildcard hosts match one label; an exact host wins over a wildcard.
func TestWildcardHosts(t *testing.T) {
	h := startHarness(t, coldFeatures)
	wild := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "wild") })
	exact := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "exact") })
	h.setEndpoints("apps", "wild", true, wild.addr())
	h.setEndpoints("apps", "exact", true, exact.addr())
	for host, want := range map[string]string{
		"a.wild.test":       "200 wild",
		"A.Wild.Test.:8080": "200 wild",
		"exact.wild.test":   "200 exact",
		"wild.test":         "404",
		"a.b.wild.test":     "404",
	} {
		resp, body, err := h.get(host, "/")
		if err != nil {
			t.Fatal(err)
		}
		got := strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == 200 {
			got += " " + body
		}
		if got != want {
			t.Errorf("%s: got %q; want %q", host, got, want)
		}
	}
}

// Probes (by path or user agent) of a cold service are answered without
// parking and without counting as activity; of a ready service they are
// forwarded, still not counted.
func TestProbeFilter(t *testing.T) {
	h := startHarness(t, coldFeatures)
	for _, tc := range []struct{ path, ua string }{
		{"/healthz", "curl/8"},
		{"/", "kube-probe/1.31"},
		{"/status", "Mozilla/5.0+(compatible; UptimeRobot/2.0)"},
	} {
		req, _ := http.NewRequest("GET", "http://"+h.addr+tc.path, nil)
		req.Host, req.Header["User-Agent"] = "app.test", []string{tc.ua}
		resp, body, err := do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !strings.Contains(body, "scaled to zero") {
			t.Errorf("%s %s: got %d %q; want 200 answered by Agimo", tc.path, tc.ua, resp.StatusCode, body)
		}
	}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	h.setEndpoints("apps", "app", true, up.addr())
	h.waitReady("app.test") // a probe does not park: it sees readiness as it is
	if _, body, err := h.get("app.test", "/healthz"); err != nil || body != "app" {
		t.Errorf("probe of a ready service: got %q %v; want the app's answer", body, err)
	}
	h.waitMetric(`agimo_requests_total{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	h.waitMetric(`agimo_probe_requests_total{host="app.test"}`, 4)
}

// A browser navigating to a cold service gets the waiting page at once
// (counted as activity, so the service wakes), while an API client on the
// same route is parked as before.
func TestWaitingPage(t *testing.T) {
	h := startHarness(t, coldFeatures)
	req, _ := http.NewRequest("GET", "http://"+h.addr+"/", nil)
	req.Host = "app.test"
	req.Header.Set("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
	start := time.Now()
	resp, body, err := do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || !strings.Contains(body, `http-equiv="refresh"`) || !strings.Contains(body, "app.test") {
		t.Fatalf("got %d %q; want 503 and a self-refreshing page naming the host", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q; want text/html", ct)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("waiting page took %v; want it at once", time.Since(start))
	}
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 1 {
		t.Errorf("requests_total = %v; want 1 (the page view counts as activity)", got)
	}

	// An API client is parked, not given the page.
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+h.addr+"/api", nil)
		req.Host = "app.test"
		req.Header.Set("Accept", "application/json")
		resp, body, err := do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		done <- strconv.Itoa(resp.StatusCode) + " " + body
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "json") })
	h.setEndpoints("apps", "app", true, up.addr())
	if got := <-done; got != "200 json" {
		t.Errorf("API client got %q; want %q", got, "200 json")
	}
}

// Retry-After on a park timeout comes from the service's observed cold
// starts once there are some, and a default before.
func TestRetryAfterLearned(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "2500ms"`, 1))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	retryAfter := func() string {
		resp, _, err := h.get("app.test", "/")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 503 {
			t.Fatalf("status %d; want 503", resp.StatusCode)
		}
		return resp.Header.Get("Retry-After")
	}
	if got := retryAfter(); got != "5" {
		t.Errorf("Retry-After before any cold start = %q; want the default 5", got)
	}
	// One cold start of about 1.5s.
	done := make(chan struct{})
	go func() { h.get("app.test", "/"); close(done) }()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	time.Sleep(1500 * time.Millisecond)
	h.setEndpoints("apps", "app", true, up.addr())
	<-done
	h.setEndpoints("apps", "app", false, up.addr())
	h.waitReadiness("app.test", "", false) // else the request may be served
	if got := retryAfter(); got != "2" {
		t.Errorf("Retry-After after a 1.5s cold start = %q; want 2", got)
	}
}
