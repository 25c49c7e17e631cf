package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/proxy"
	"github.com/agimo/agimo/watch"
)

// harness runs the real Watcher, on client-go's fake clientset, and a real
// Proxy on 127.0.0.1:0 (issue 2: integration tests drive the real informer
// code; only the API server is fake).
type harness struct {
	t     testing.TB
	cfg   *conf.Config
	kube  *fake.Clientset
	set   *metrics.Set
	proxy *proxy.Proxy
	addr  string // proxy listener
	w     *watch.Watcher
	// appProtocol is the appProtocol setEndpoints gives the slices' port
	// ("" for none; route.AppProtocolH2C for an h2c upstream).
	appProtocol string
}

// startHarness parses cfgTOML, creates each configured Service (port
// service_port named "http"), and starts watcher and proxy.
func startHarness(t testing.TB, cfgTOML string, opts ...func(*proxy.Options)) *harness {
	t.Helper()
	return startHarnessExtras(t, cfgTOML, nil, opts...)
}

// startHarnessExtras is startHarness with extras (conf.Extras, which no
// TOML key sets) added to the parsed config by extras.
func startHarnessExtras(t testing.TB, cfgTOML string, extras func(*conf.Config), opts ...func(*proxy.Options)) *harness {
	t.Helper()
	cfg, err := conf.Parse(strings.NewReader(cfgTOML))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	if extras != nil {
		extras(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate config: %v", err)
	}
	h := &harness{t: t, cfg: cfg, kube: fake.NewClientset(), set: metrics.NewSet()}
	for _, s := range cfg.Services {
		if s.ServiceName != "" { // a redirect or fixed answer has none
			h.createService(s.Namespace, s.ServiceName, int32(s.ServicePort))
		}
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	w := watch.New(h.kube, proxy.Keys(cfg), log, h.set)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatalf("start watcher: %v", err)
	}
	o := proxy.Options{Log: log, Metrics: h.set}
	for _, f := range opts {
		f(&o)
	}
	p, err := proxy.New(cfg, w, o)
	if err != nil {
		t.Fatalf("new proxy: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.proxy, h.addr, h.w = p, ln.Addr().String(), w
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		w.Close()
	})
	return h
}

func (h *harness) createService(ns, name string, port int32) {
	h.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(8080),
		}}},
	}
	if _, err := h.kube.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		h.t.Fatalf("create service: %v", err)
	}
}

// setEndpoints makes the EndpointSlices of service ns/name list addrs
// ("127.0.0.1:port"), one slice per address since a slice has one port
// list, with the given readiness. Slices beyond len(addrs) are deleted.
func (h *harness) setEndpoints(ns, name string, ready bool, addrs ...string) {
	h.t.Helper()
	ctx := context.Background()
	api := h.kube.DiscoveryV1().EndpointSlices(ns)
	for i, a := range addrs {
		host, ps, err := net.SplitHostPort(a)
		if err != nil {
			h.t.Fatal(err)
		}
		p, _ := strconv.Atoi(ps)
		port := discoveryv1.EndpointPort{Name: ptr("http"), Port: ptr(int32(p)), Protocol: ptr(corev1.ProtocolTCP)}
		if h.appProtocol != "" {
			port.AppProtocol = ptr(h.appProtocol)
		}
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, i), Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{port},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready)}}},
		}
		if _, err := api.Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			if _, err := api.Create(ctx, es, metav1.CreateOptions{}); err != nil {
				h.t.Fatalf("create endpointslice: %v", err)
			}
		}
	}
	for i := len(addrs); i < 16; i++ {
		_ = api.Delete(ctx, fmt.Sprintf("%s-%d", name, i), metav1.DeleteOptions{})
	}
	// client-go's fake keeps a deep copy of every call for tests that
	// inspect them; none here does, and the hour-long soak, which flips
	// readiness every 2.5 s, grew its heap by 4 MiB with them.
	h.kube.ClearActions()
	if ready && len(addrs) > 0 {
		// A request sent next must find the service ready, not park
		// until the informer catches up: tests that count parks, spans
		// or log fields would see one more.
		h.waitServiceReady(ns, name)
	}
}

// waitServiceReady waits until the informer has seen every configured
// entry of service ns/name ready.
func (h *harness) waitServiceReady(ns, name string) {
	h.t.Helper()
	for _, s := range h.cfg.Services {
		if s.Namespace != ns || s.ServiceName != name {
			continue
		}
		h.waitReadiness(s.Host, name, true)
	}
}

func ptr[T any](v T) *T { return &v }

// metric returns the value of the series whose text form starts with
// name (e.g. `agimo_active_requests{host="a.test"}`), or -1 if absent.
func (h *harness) metric(name string) float64 {
	var b strings.Builder
	h.set.WritePrometheus(&b)
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	return -1
}

// waitReady waits until the informer has seen host's service ready, for
// a request that must not park (a probe).
func (h *harness) waitReady(host string) {
	h.t.Helper()
	h.waitReadiness(host, "", true)
}

// waitReadyService is waitReady for host's entry whose service_name is
// name ("": the first entry), when entries share a host (paths).
func (h *harness) waitReadyService(host, name string) {
	h.t.Helper()
	h.waitReadiness(host, name, true)
}

// waitReadiness waits until the informer has seen the service of host's
// entry named name ("": the first) ready or not, as want says.
func (h *harness) waitReadiness(host, name string, want bool) {
	h.t.Helper()
	for _, s := range h.cfg.Services {
		if s.Host != host || (name != "" && s.ServiceName != name) {
			continue
		}
		ws := h.w.Service(watch.Key{Namespace: s.Namespace, Service: s.ServiceName, Port: int32(s.ServicePort)})
		timeout := time.After(5 * time.Second)
		for st := ws.State(); st.Ready != want; st = ws.State() {
			select {
			case <-st.Changed():
			case <-timeout:
				h.t.Fatalf("%s: ready is not %v after 5s", host, want)
			}
		}
		return
	}
	h.t.Fatalf("no service %s", host)
}

// waitMetric waits until metric name has value want. Gauges settle a
// moment after the response is written, so tests poll briefly.
func (h *harness) waitMetric(name string, want float64) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := h.metric(name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s = %v; want %v", name, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get sends GET path with the given Host through the proxy.
func (h *harness) get(host, path string) (*http.Response, string, error) {
	req, err := http.NewRequest("GET", "http://"+h.addr+path, nil)
	if err != nil {
		return nil, "", err
	}
	req.Host = host
	return do(req)
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000, DisableCompression: true}}

func do(req *http.Request) (*http.Response, string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp, b.String(), err
}

// rawExchange writes raw bytes to the proxy and returns everything read
// until the proxy closes the connection or idle passes.
func (h *harness) rawExchange(raw string, idle time.Duration) (string, bool) {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(raw)); err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			var ne net.Error
			closed := !(errorsAs(err, &ne) && ne.Timeout())
			return b.String(), closed
		}
	}
}

const oneService = `
timeout = "2s"
[[services]]
host = "app.test"
type = "deployment"
namespace = "apps"
name = "app"
service_name = "app"
service_port = 80
`
