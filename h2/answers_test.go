package h2_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

const answerServices = `
timeout = "10s"
max_request_body = "1KiB"
[[services]]
host = "page.test"
type = "deployment"
namespace = "apps"
name = "page"
service_name = "page"
service_port = 80
waiting_page = true

[[services]]
host = "probe.test"
type = "deployment"
namespace = "apps"
name = "probe"
service_name = "probe"
service_port = 80
probe_paths = ["/healthz", "/grpc.health.v1.Health/Check"]
`

// A browser's navigation to a cold service with waiting_page gets the page
// at once (503, no-store, Retry-After); an API client on the same
// service parks as ever.
func TestWaitingPage(t *testing.T) {
	h := startHarness(t, answerServices)
	c := h2cClient(t, h.addr)
	r := get(t, c, "http://page.test/", "Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
	if r.resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.body, "page.test") || !strings.Contains(r.body, `http-equiv="refresh"`) {
		t.Fatalf("got %d %q; want 503 and a self-refreshing page naming the host", r.resp.StatusCode, r.body)
	}
	for k, want := range map[string]string{"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"} {
		if got := r.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if r.resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if got := h.metric(`agimo_requests_total{host="page.test"}`); got != 1 {
		t.Errorf("requests_total = %v; want 1 (the page view counts as activity)", got)
	}
	if got := h.metric(`agimo_parked_requests{host="page.test"}`); got != 0 {
		t.Errorf("parked = %v; want 0", got)
	}

	// Not a navigation: parked, released.
	up := newH1Upstream(t)
	req, _ := http.NewRequest(http.MethodGet, "http://page.test/api", nil)
	req.Header.Set("Accept", "application/json")
	done := send(c, req)
	h.waitMetric(`agimo_parked_requests{host="page.test"}`, 1)
	h.setEndpoints("apps", "page", "", true, up.addr())
	if r := <-done; r.err != nil || r.resp.StatusCode != http.StatusCreated {
		t.Fatalf("API client: got %v, %v; want the app's 201", r.resp, r.err)
	}
	h.waitMetric(`agimo_active_requests{host="page.test"}`, 0)
}

// A probe of a cold service is answered by Agimo, over HTTP/2 and as a
// gRPC health check, without counting as activity; once the service is
// ready, it is forwarded.
func TestProbeOfColdService(t *testing.T) {
	h := startHarness(t, answerServices)
	c := h2cClient(t, h.addr)
	r := get(t, c, "http://probe.test/healthz")
	if r.resp.StatusCode != http.StatusOK || !strings.Contains(r.body, "probe.test is scaled to zero") {
		t.Errorf("HTTP probe: got %d %q; want 200 answered by Agimo", r.resp.StatusCode, r.body)
	}
	hc := healthpb.NewHealthClient(dialGRPCConn(t, h.addr, "probe.test"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health check: got %v, %v; want SERVING", resp, err)
	}
	if got := h.metric(`agimo_requests_total{host="probe.test"}`); got != 0 {
		t.Errorf("requests_total = %v; want 0 (probes are not activity)", got)
	}
	if got := h.metric(`agimo_probe_requests_total{host="probe.test"}`); got != 2 {
		t.Errorf("probe_requests_total = %v; want 2", got)
	}
	up := newH1Upstream(t)
	h.setEndpoints("apps", "probe", "", true, up.addr())
	h.waitReady("probe.test")
	if r := get(t, c, "http://probe.test/healthz"); r.resp.StatusCode != http.StatusCreated || up.hits.Load() != 1 {
		t.Errorf("probe of a ready service: got %d, upstream hits %d; want the app's 201", r.resp.StatusCode, up.hits.Load())
	}
}

// max_request_body: a body declared too large is refused at once with
// 413; one that turns out too large while streaming fails with 413 too,
// and a gRPC call over the limit gets RESOURCE_EXHAUSTED.
func TestMaxRequestBody(t *testing.T) {
	h := startHarness(t, answerServices+grpcService("big.test", "big"))
	up := newH1Upstream(t)
	h.setEndpoints("apps", "page", "", true, up.addr())
	h.waitReady("page.test")
	c := h2cClient(t, h.addr)

	req, _ := http.NewRequest(http.MethodPost, "http://page.test/up", bytes.NewReader(make([]byte, 2000)))
	r := <-send(c, req)
	if r.err != nil || r.resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared 2000 bytes: got %v, %v; want 413", r.resp, r.err)
	}
	if up.hits.Load() != 0 {
		t.Errorf("upstream hits = %d; want 0", up.hits.Load())
	}
	// No Content-Length: the limit bites while the body streams.
	req, _ = http.NewRequest(http.MethodPost, "http://page.test/up", io.MultiReader(strings.NewReader(strings.Repeat("x", 2000))))
	req.ContentLength = -1
	r = <-send(c, req)
	if r.err != nil || r.resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("streamed 2000 bytes: got %v, %v; want 413", r.resp, r.err)
	}
	// Within the limit, it goes through.
	req, _ = http.NewRequest(http.MethodPost, "http://page.test/ok", strings.NewReader(strings.Repeat("y", 1000)))
	if r = <-send(c, req); r.err != nil || r.resp.StatusCode != http.StatusCreated {
		t.Fatalf("1000 bytes: got %v, %v; want 201", r.resp, r.err)
	}
	if b, _ := up.byPath.Load("/ok"); b != strings.Repeat("y", 1000) {
		got, _ := b.(string)
		t.Fatalf("1000 bytes: upstream got %d bytes; want the 1000 sent", len(got))
	}

	app := startGRPCApp(t, "pod-big")
	h.setEndpoints("apps", "big", "kubernetes.io/h2c", true, app)
	h.waitReady("big.test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dialGRPC(t, h.addr, "big.test").UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 4000)}})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted {
		t.Errorf("gRPC call over the limit: got %v %q; want ResourceExhausted", st.Code(), st.Message())
	}
	h.waitMetric(`agimo_active_requests{host="page.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="big.test"}`, 0)
}

// At shutdown, a parked stream is answered 503 "shutting down" and a
// parked gRPC call UNAVAILABLE, before the connection goes away.
func TestShutdownAnswersParkedStreams(t *testing.T) {
	h := startHarness(t, answerServices+grpcService("g.test", "g"))
	req, _ := http.NewRequest(http.MethodGet, "http://page.test/", nil)
	parked := send(h2cClient(t, h.addr), req)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	grpcErr := make(chan error, 1)
	g := dialGRPC(t, h.addr, "g.test")
	go func() {
		_, err := g.UnaryCall(ctx, &testpb.SimpleRequest{})
		grpcErr <- err
	}()
	h.waitMetric(`agimo_parked_requests{host="page.test"}`, 1)
	h.waitMetric(`agimo_parked_requests{host="g.test"}`, 1)
	h.shutdown()

	r := <-parked
	if r.err != nil || r.resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.body, "shutting down") {
		t.Errorf("parked stream: got %v %q, %v; want 503 shutting down", r.resp, r.body, r.err)
	} else if r.resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if st := status.Convert(<-grpcErr); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
		t.Errorf("parked gRPC call: got %v %q; want Unavailable, shutting down", st.Code(), st.Message())
	}
	for _, host := range []string{"page.test", "g.test"} {
		h.waitMetric(`agimo_parked_requests{host="`+host+`"}`, 0)
		h.waitMetric(`agimo_active_requests{host="`+host+`"}`, 0)
	}
	waitNoHandlers(t)
}

// grpcService is the config of one more service, host on service name.
func grpcService(host, name string) string {
	return `
[[services]]
host = "` + host + `"
type = "deployment"
namespace = "apps"
name = "` + name + `"
service_name = "` + name + `"
service_port = 80
`
}

// Agimo's own refusals over HTTP/2 are the HTTP/1.1 front end's: 503 with
// Retry-After for a park timeout or a full park, 404 for no route.
func TestHTTPRefusals(t *testing.T) {
	h := startHarness(t, grpcServices)
	c := h2cClient(t, h.addr)
	check := func(what string, r result, status int, msg string, retry bool) {
		t.Helper()
		if r.resp.StatusCode != status || !strings.Contains(r.body, msg) || (r.resp.Header.Get("Retry-After") != "") != retry {
			t.Errorf("%s: got %d %q Retry-After %q; want %d with %q, Retry-After %v", what,
				r.resp.StatusCode, r.body, r.resp.Header.Get("Retry-After"), status, msg, retry)
		}
	}
	check("park timeout", get(t, c, "http://short.test/"), 503, "service short.test did not become ready within 200ms", true)
	check("no route", get(t, c, "http://nope.test/"), 404, "Not Found", false)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://one.test/", nil)
	parked := send(c, req)
	h.waitMetric(`agimo_parked_requests{host="one.test"}`, 1)
	check("max_parked", get(t, c, "http://one.test/"), 503, "too many requests waiting for service one.test", true)
	cancel()
	<-parked
	h.waitMetric(`agimo_parked_requests{host="one.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="one.test"}`, 0)
}

// Agimo is not a forward proxy: CONNECT (RFC 9113 §8.5) is refused with
// 405, as over HTTP/1.1, and nothing reaches the app.
func TestConnectRefused(t *testing.T) {
	h := startHarness(t, oneService)
	up := newH1Upstream(t)
	h.setEndpoints("apps", "app", "", true, up.addr())
	h.waitReady("app.test")
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodConnect, "http://app.test:443", pr)
	req.Host = "app.test:443"
	resp, err := h2cClient(t, h.addr).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), "CONNECT is not supported") {
		t.Errorf("got %d %q; want 405 CONNECT is not supported", resp.StatusCode, body)
	}
	if up.hits.Load() != 0 {
		t.Errorf("upstream hits = %d; want 0", up.hits.Load())
	}
}
