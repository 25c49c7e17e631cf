package h2_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/h2"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/scale"
	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/watch"
)

// harness runs the real Watcher on client-go's fake clientset, the shared
// core and the HTTP/2 front end behind a loopback listener whose accept
// loop hands every connection to ServeConn, as the plain port does for a
// client that opens with the h2c preface (only the API server is fake).
type harness struct {
	t    testing.TB
	cfg  *conf.Config
	kube *fake.Clientset
	set  *metrics.Set
	core *core.Core
	srv  *h2.Server
	addr string // the front end's listener

	stopOnce sync.Once
	stop     func()
}

// startHarness parses cfgTOML, creates each configured Service (port
// service_port named "http"), and starts watcher, core and front end.
func startHarness(t testing.TB, cfgTOML string) *harness {
	t.Helper()
	return startHarnessWith(t, cfgTOML, harnessOpts{})
}

// harnessOpts are startHarnessWith's options.
type harnessOpts struct {
	// tls makes the listener a TLS one: each connection's handshake
	// first, then ServeConn with tls true, as the TLS port does for a
	// client that chose "h2" by ALPN.
	tls *tls.Config
	// scaler wakes and idles workloads (nil: neither).
	scaler scale.Scaler
	// accessLog gets the streams' access log lines (nil: off).
	accessLog *accesslog.Logger
	// extras adds to the parsed config what no TOML key sets
	// (conf.Extras).
	extras func(*conf.Config)
	// tracer starts the streams' spans (nil: off).
	tracer *tracing.Tracer
}

// startHarnessWith is startHarness with options.
func startHarnessWith(t testing.TB, cfgTOML string, o harnessOpts) *harness {
	t.Helper()
	tc := o.tls
	cfg, err := conf.Parse(strings.NewReader(cfgTOML))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	if o.extras != nil {
		o.extras(cfg)
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
	w := watch.New(h.kube, route.Keys(cfg), log, h.set)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatalf("start watcher: %v", err)
	}
	h.core, err = core.New(cfg, w, core.Options{Log: log, Metrics: h.set, Scaler: o.scaler, AccessLog: o.accessLog, Tracer: o.tracer})
	if err != nil {
		t.Fatalf("new core: %v", err)
	}
	h.srv = h2.New(h.core, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	var conns sync.WaitGroup
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tc == nil {
				conns.Go(func() { h.srv.ServeConn(c, false) })
				continue
			}
			conns.Go(func() {
				tlsConn := tls.Server(c, tc)
				if err := tlsConn.HandshakeContext(context.Background()); err != nil {
					c.Close()
					return
				}
				h.srv.ServeConn(tlsConn, true)
			})
		}
	}()
	h.stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// As main does: the core stops first, so parked streams answer 503
		// before the connections are told to go away.
		h.core.Stop()
		ln.Close()
		<-accepted
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		conns.Wait()
		if err := h.core.Close(ctx); err != nil {
			t.Errorf("close core: %v", err)
		}
	}
	t.Cleanup(func() {
		h.shutdown()
		w.Close()
	})
	return h
}

// shutdown stops the front end and the core; the cleanup calls it too.
func (h *harness) shutdown() { h.stopOnce.Do(h.stop) }

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

// setEndpoints makes the EndpointSlice of service ns/name list addr
// ("127.0.0.1:port") with the given readiness, its port's appProtocol
// appProto ("" for none).
func (h *harness) setEndpoints(ns, name, appProto string, ready bool, addr string) {
	h.t.Helper()
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		h.t.Fatal(err)
	}
	p, _ := strconv.Atoi(ps)
	port := discoveryv1.EndpointPort{Name: ptr("http"), Port: ptr(int32(p)), Protocol: ptr(corev1.ProtocolTCP)}
	if appProto != "" {
		port.AppProtocol = ptr(appProto)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-0", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{port},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready)}}},
	}
	api := h.kube.DiscoveryV1().EndpointSlices(ns)
	if _, err := api.Update(context.Background(), es, metav1.UpdateOptions{}); err != nil {
		if _, err := api.Create(context.Background(), es, metav1.CreateOptions{}); err != nil {
			h.t.Fatalf("create endpointslice: %v", err)
		}
	}
	if ready {
		// A stream sent next must find the service ready, not park until
		// the informer catches up: tests that check cold-start fields
		// would see one.
		for _, r := range h.core.Routes().All() {
			if r.Ready != nil && r.Svc.Namespace == ns && r.Svc.ServiceName == name {
				h.waitRoute(r)
			}
		}
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
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	return -1
}

// waitMetric waits until metric name has value want. A gauge settles a
// moment after the answer is written (the handler returns after its last
// write), so this polls, within a bound.
func (h *harness) waitMetric(name string, want float64) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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

// waitMetricAtLeast waits until metric name reaches min.
func (h *harness) waitMetricAtLeast(name string, min float64) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := h.metric(name)
		if got >= min {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s = %v; want at least %v", name, got, min)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitReady waits until the service of host has a ready endpoint, as
// the informer saw it.
func (h *harness) waitReady(host string) {
	h.t.Helper()
	h.waitReadyAt(host, "/")
}

// waitReadyAt is waitReady for the service that serves path on host.
func (h *harness) waitReadyAt(host, path string) {
	h.t.Helper()
	r, _ := h.core.Routes().Lookup([]byte(host), []byte(path), nil)
	if r == nil {
		h.t.Fatalf("no route for %s%s", host, path)
	}
	h.waitRoute(r)
}

// waitRoute waits until the informer has seen r's service ready.
func (h *harness) waitRoute(r *route.Route) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for st := r.Ready.State(); !st.Ready; st = r.Ready.State() {
		select {
		case <-st.Changed():
		case <-time.After(time.Until(deadline)):
			h.t.Fatalf("%s not ready", r.Host)
		}
	}
}

// waitNoHandlers waits until no goroutine runs the front end's stream
// handler: each stream's goroutine has ended.
func waitNoHandlers(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if !strings.Contains(string(buf[:n]), "h2.(*Server).ServeHTTP") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream handlers still running:\n%s", buf[:n])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// h2cClient is an HTTP/2 client with prior knowledge (RFC 9113 §3.3):
// every request goes to addr over one plain TCP connection, whatever its
// URL's host, which becomes :authority.
func h2cClient(t testing.TB, addr string) *http.Client {
	c, _ := h2cClientConns(t, addr)
	return c
}

// h2cClientConns is h2cClient, with a function that closes the client's
// TCP connections at once, streams in flight or not.
func h2cClientConns(t testing.TB, addr string) (*http.Client, func()) {
	var mu sync.Mutex
	var conns []net.Conn
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
			return c, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

// result is what a request sent on another goroutine got.
type result struct {
	resp *http.Response
	body string
	err  error
}

// send sends req with c on a new goroutine and returns where its result
// arrives, the body read in full (trailers are then in resp.Trailer).
func send(c *http.Client, req *http.Request) <-chan result {
	done := make(chan result, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, err = bufio.NewReader(resp.Body).WriteTo(&b)
		done <- result{resp: resp, body: b.String(), err: err}
	}()
	return done
}

// get sends GET url with c and waits for the answer.
func get(t testing.TB, c *http.Client, url string, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r := <-send(c, req)
	if r.err != nil {
		t.Fatalf("GET %s: %v", url, r.err)
	}
	return r
}
