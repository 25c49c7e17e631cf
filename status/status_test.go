package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/status"
	"github.com/agimo/agimo/watch"
)

// rig is a core on the real Watcher over client-go's fake clientset, and
// the status page on a real listener.
type rig struct {
	t      *testing.T
	kube   *fake.Clientset
	w      *watch.Watcher
	core   *core.Core
	srv    *httptest.Server
	reload status.Reloads
}

// startRig builds the core of cfgTOML. validate false keeps entries that
// Validate would reject (a hostile host name, to test escaping).
func startRig(t *testing.T, cfgTOML string, validate bool, edit func(*conf.Config), sc *fakeScaler) *rig {
	t.Helper()
	cfg, err := conf.Parse(strings.NewReader(cfgTOML))
	if err != nil {
		t.Fatal(err)
	}
	if validate {
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		edit(cfg)
	}
	rg := &rig{t: t, kube: fake.NewClientset()}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	set := metrics.NewSet()
	rg.w = watch.New(rg.kube, route.Keys(cfg), log, set)
	t.Cleanup(rg.w.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rg.w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	o := core.Options{Log: log, Metrics: set}
	if sc != nil {
		o.Scaler = sc
	}
	if rg.core, err = core.New(cfg, rg.w, o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rg.core.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	rg.srv = httptest.NewServer(status.Handler(status.Options{Core: func() *core.Core { return rg.core }, Reloads: &rg.reload}))
	t.Cleanup(rg.srv.Close)
	return rg
}

// route returns the route of host.
func (rg *rig) route(host string) *route.Route {
	for _, r := range rg.core.Routes().All() {
		if r.Host == host {
			return r
		}
	}
	rg.t.Fatalf("no route %s", host)
	return nil
}

// setReady gives service ns/name one ready endpoint and waits until its
// route sees it.
func (rg *rig) setReady(host, ns, name, ip string) {
	rg.t.Helper()
	ctx := context.Background()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if _, err := rg.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		rg.t.Fatal(err)
	}
	port, ready := int32(8080), true
	portName, proto := "http", corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-0", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	if _, err := rg.kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		rg.t.Fatal(err)
	}
	ws := rg.route(host).Ready
	timeout := time.After(10 * time.Second)
	for st := ws.State(); !st.Ready; st = ws.State() {
		select {
		case <-st.Changed():
		case <-timeout:
			rg.t.Fatalf("%s not ready after 10s", host)
		}
	}
}

// get fetches /status with accept as Accept ("": none sent).
func (rg *rig) get(accept string) (*http.Response, string) {
	rg.t.Helper()
	req, _ := http.NewRequest("GET", rg.srv.URL+"/status", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rg.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rg.t.Fatal(err)
	}
	return resp, string(b)
}

// view fetches and decodes the JSON view.
func (rg *rig) view() *status.View {
	rg.t.Helper()
	resp, body := rg.get("application/json")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		rg.t.Fatalf("Content-Type = %q; want application/json", ct)
	}
	var v status.View
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		rg.t.Fatalf("decode %s: %v", body, err)
	}
	return &v
}

// fakeScaler wakes every workload at once.
type fakeScaler struct{}

func (fakeScaler) WakeUp(context.Context, watch.Workload, int32) (bool, error) { return true, nil }
func (fakeScaler) RecordActivity(context.Context, watch.Workload, time.Time, time.Duration) error {
	return nil
}
func (fakeScaler) ScaleDownIfIdle(context.Context, watch.Workload, time.Duration, time.Time) (bool, error) {
	return false, nil
}

const fourServices = `
timeout = "60s"
[[services]]
host = "cold.test"
type = "deployment"
namespace = "apps"
name = "cold"
service_name = "cold"
service_port = 80
[[services]]
host = "ready.test"
type = "statefulset"
namespace = "apps"
name = "ready"
service_name = "ready"
service_port = 80
paths = ["/api", "/web"]
[[services]]
host = "parked.test"
type = "deployment"
namespace = "apps"
name = "parked"
service_name = "parked"
service_port = 80
wake = true
idle_after = "10m"
[[services]]
host = "warmed.test"
type = "deployment"
namespace = "apps"
name = "warmed"
service_name = "warmed"
service_port = 80
`

// TestStatusJSON: the JSON view of a table of route states.
func TestStatusJSON(t *testing.T) {
	rg := startRig(t, fourServices, true, func(c *conf.Config) {
		c.Services[2].Source = "Ingress apps/parked"
	}, &fakeScaler{})
	rg.setReady("ready.test", "apps", "ready", "10.0.0.7")

	// Two requests parked on parked.test: a cold start under way, woken.
	parked := rg.route("parked.test")
	for range 2 {
		if !parked.TryPark() {
			t.Fatal("TryPark refused")
		}
		rg.core.Policy.Begin(parked, nil)
	}
	rg.core.Policy.Wait() // the wake-up call has returned
	defer func() { parked.Unpark(); parked.Unpark() }()

	// warmed.test went through one whole cold start.
	warmed := rg.route("warmed.test")
	warmed.BeginCold()
	warmed.ReadyCold()
	warmed.FirstByte()

	stats.NewTunnel(rg.core.Metrics, "ready.test").Open.Inc()
	rg.reload.Record(time.Now(), errors.New(`conf.toml:3: key "hots": unknown`))

	v := rg.view()
	if v.LastReload == nil || v.LastReload.Result != "error" || !strings.Contains(v.LastReload.Error, `"hots"`) {
		t.Errorf("last_reload = %+v; want the error", v.LastReload)
	}
	if len(v.Routes) != 4 {
		t.Fatalf("got %d routes; want 4", len(v.Routes))
	}
	byHost := map[string]status.RouteView{}
	for _, r := range v.Routes {
		byHost[r.Host] = r
	}
	for _, tc := range []struct {
		host, state, source, service, workload, paths, endpoints string
		parked, tunnels                                          int64
		coldNow                                                  bool
		coldStarts                                               int
	}{
		{host: "cold.test", state: "cold", source: "file", service: "apps/cold:80", workload: "deployment apps/cold",
			paths: "[/]", endpoints: "[]"},
		{host: "ready.test", state: "ready", source: "file", service: "apps/ready:80", workload: "statefulset apps/ready",
			paths: "[/api /web]", endpoints: "[10.0.0.7:8080]", tunnels: 1},
		{host: "parked.test", state: "starting", source: "Ingress apps/parked", service: "apps/parked:80",
			workload: "deployment apps/parked", paths: "[/]", endpoints: "[]", parked: 2, coldNow: true},
		{host: "warmed.test", state: "cold", source: "file", service: "apps/warmed:80", workload: "deployment apps/warmed",
			paths: "[/]", endpoints: "[]", coldStarts: 1},
	} {
		t.Run(tc.host, func(t *testing.T) {
			r := byHost[tc.host]
			for _, f := range []struct{ name, got, want string }{
				{"state", r.State, tc.state}, {"source", r.Source, tc.source}, {"service", r.Service, tc.service},
				{"workload", r.Workload, tc.workload}, {"paths", fmt.Sprint(r.Paths), tc.paths},
				{"endpoints", fmt.Sprint(r.Endpoints), tc.endpoints},
			} {
				if f.got != f.want {
					t.Errorf("%s = %q; want %q", f.name, f.got, f.want)
				}
			}
			if r.Parked != tc.parked || r.Active != 0 || r.OpenTunnels != tc.tunnels {
				t.Errorf("parked, active, open_tunnels = %d, %d, %d; want %d, 0, %d", r.Parked, r.Active, r.OpenTunnels, tc.parked, tc.tunnels)
			}
			if (r.ColdStart != nil) != tc.coldNow {
				t.Errorf("cold_start = %+v; want under way: %v", r.ColdStart, tc.coldNow)
			}
			if len(r.ColdStarts) != tc.coldStarts {
				t.Errorf("got %d cold_starts; want %d", len(r.ColdStarts), tc.coldStarts)
			}
		})
	}

	p := byHost["parked.test"]
	if cs := p.ColdStart; cs != nil && (cs.Scale == nil || cs.Ready != nil || cs.Failed) {
		t.Errorf("parked.test cold_start = %+v; want scaled, not ready, not failed", cs)
	}
	if s := p.Scaling; !s.Wake || s.LastWake == nil || s.WakeError != "" || s.IdleAfter != 600 {
		t.Errorf("parked.test scaling = %+v; want woken, idle after 600 s", s)
	}
	w := byHost["warmed.test"]
	if cs := w.ColdStarts; len(cs) == 1 && (cs[0].Ready == nil || cs[0].FirstByte == nil || cs[0].Scale != nil || cs[0].Failed) {
		t.Errorf("warmed.test cold_starts[0] = %+v; want ready and first byte, no scale", cs[0])
	}
	if s := byHost["cold.test"].Scaling; s.Wake || s.LastWake != nil || s.IdleAfter != 0 || s.ScaleDownIn != nil {
		t.Errorf("cold.test scaling = %+v; want none", s)
	}

	// The raw JSON's names and nulls, which scripts read.
	_, body := rg.get("application/json")
	for _, want := range []string{`"last_reload": {`, `"result": "error"`, `"routes": [`, `"cold_start": null`,
		`"cold_starts": []`, `"first_byte_seconds": null`, `"idle_after_seconds": 600`, `"open_tunnels": 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("JSON lacks %s:\n%s", want, body)
		}
	}
}

// TestStatusEscapes: names from the config and the cluster are text in
// the page, never markup.
func TestStatusEscapes(t *testing.T) {
	const hostile = `<script>alert(1)</script>.test`
	cfg := strings.Replace(fourServices, `host = "cold.test"`, `host = "`+hostile+`"`, 1)
	rg := startRig(t, cfg, false, func(c *conf.Config) {
		c.Services[0].Source = `Ingress apps/"><img src=x onerror=alert(2)>`
	}, nil)
	rg.reload.Record(time.Now(), errors.New("bad <b>key</b>"))
	resp, body := rg.get("text/html")
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type = %q; want text/html", ct)
	}
	for _, bad := range []string{"<script>", "<img", "<b>key"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q unescaped:\n%s", bad, body)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;.test", "&lt;img src=x onerror=alert(2)&gt;",
		"&lt;b&gt;key&lt;/b&gt;", `<meta http-equiv="refresh" content="5">`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

// TestStatusNegotiation: JSON only for a client preferring it.
func TestStatusNegotiation(t *testing.T) {
	rg := startRig(t, fourServices, true, nil, nil)
	for _, tc := range []struct{ accept, want string }{
		{"application/json", "application/json"},
		{"text/html", "text/html; charset=utf-8"},
		{"*/*", "text/html; charset=utf-8"},
		{"", "text/html; charset=utf-8"},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html; charset=utf-8"},
		{"text/html;q=0.5, application/json", "application/json"},
		{"application/*", "application/json"},
		{"application/json;q=0, */*", "text/html; charset=utf-8"},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			resp, body := rg.get(tc.accept)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.want {
				t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, resp.Header.Get("Content-Type"), tc.want)
			}
			if resp.Header.Get("Vary") != "Accept" {
				t.Errorf("Vary = %q; want Accept", resp.Header.Get("Vary"))
			}
			if tc.want == "application/json" && !json.Valid([]byte(body)) {
				t.Errorf("body is not JSON: %s", body)
			}
			if tc.want != "application/json" && !strings.HasPrefix(body, "<!doctype html>") {
				t.Errorf("body is not the page: %.80s", body)
			}
		})
	}
}

// TestStatusStarting: before the core exists, 503.
func TestStatusStarting(t *testing.T) {
	srv := httptest.NewServer(status.Handler(status.Options{Core: func() *core.Core { return nil }}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("got %d; want 503", resp.StatusCode)
	}
}
