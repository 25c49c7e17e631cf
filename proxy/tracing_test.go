package proxy_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/agimo/agimo/proxy"
	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/tracing/otlptest"
	"github.com/agimo/agimo/watch"
)

const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID  = "00f067aa0ba902b7"
	// Odd on purpose: mixed-case name, spaces inside the list.
	clientTraceparent = "00-" + clientTraceID + "-" + clientSpanID + "-01"
	clientTracestate  = "congo=t61rcWkgMzE,  rojo=00f067aa0ba902b7"
	closeResponse     = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
)

// headerLine returns the value of the one line of head named name (any
// case), as sent, and how many such lines there are.
func headerLine(head, name string) (string, int) {
	var v string
	n := 0
	for _, line := range strings.Split(head, "\r\n") {
		if k, val, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			v, n = strings.TrimPrefix(val, " "), n+1
		}
	}
	return v, n
}

// startTracer starts a tracer exporting to a receiver started for t.
func startTracer(t *testing.T, set *metrics.Set) (*tracing.Tracer, *otlptest.Receiver) {
	t.Helper()
	rcv := otlptest.Start(t)
	tr, err := tracing.New(tracing.Options{Endpoint: rcv.URL, Sample: 1, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr, rcv
}

func sendTraced(h *harness, path string) (*http.Response, error) {
	req, _ := http.NewRequest("GET", "http://"+h.addr+path, nil)
	req.Host = "app.test"
	req.Header["traceparent"] = []string{clientTraceparent}
	req.Header["TraceState"] = []string{clientTracestate}
	resp, _, err := do(req)
	return resp, err
}

// Tracing off, the client's traceparent and tracestate reach the
// upstream byte for byte (W3C Trace Context: a proxy that does not trace
// passes them on).
func TestTraceContextForwardedWhenOff(t *testing.T) {
	h := startHarness(t, oneService)
	up := newRawUpstream(t, closeResponse)
	h.setEndpoints("apps", "app", true, up.addr())
	if resp, err := sendTraced(h, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v, %v; want 200", resp, err)
	}
	heads := up.received()
	if len(heads) != 1 {
		t.Fatalf("upstream got %d requests; want 1", len(heads))
	}
	for name, want := range map[string]string{"traceparent": clientTraceparent, "tracestate": clientTracestate} {
		if got, n := headerLine(heads[0], name); got != want || n != 1 {
			t.Errorf("upstream %s = %q (%d lines); want %q, once", name, got, n, want)
		}
	}
}

// wakeScaler wakes at once, as if the API server had scaled the workload.
type wakeScaler struct{}

func (wakeScaler) WakeUp(context.Context, watch.Workload, int32) (bool, error) { return true, nil }
func (wakeScaler) RecordActivity(context.Context, watch.Workload, time.Time, time.Duration) error {
	return nil
}
func (wakeScaler) ScaleDownIfIdle(context.Context, watch.Workload, time.Duration, time.Time) (bool, error) {
	return false, nil
}

// Tracing on, a request parked in the lot (a bodiless GET) until its
// service is ready yields a server span, child of the client's
// traceparent, with a park span, a wake span (it woke the workload) and
// an upstream span under it; the upstream gets the same trace with the
// upstream span as parent, and the client's tracestate as sent.
func TestTracingParkedRequest(t *testing.T) {
	tr, rcv := startTracer(t, nil)
	cfg := strings.Replace(oneService, "service_port = 80", "service_port = 80\nwake = true", 1)
	cfg = strings.Replace(cfg, `timeout = "2s"`, `timeout = "30s"`, 1)
	h := startHarness(t, cfg, func(o *proxy.Options) { o.Tracer, o.Scaler = tr, wakeScaler{} })
	up := newRawUpstream(t, closeResponse)
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := sendTraced(h, "/p?q=1")
		done <- result{resp, err}
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", true, up.addr())
	r := <-done
	if r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("got %v, %v; want 200", r.resp, r.err)
	}
	spans := rcv.WaitFor(t, func() error { return tr.Flush(context.Background()) }, func(s []otlptest.Span) bool {
		return len(s) == 4
	})
	byName := map[string]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = s
		if s.TraceID != clientTraceID {
			t.Errorf("span %s in trace %s; want the client's %s", s.Name, s.TraceID, clientTraceID)
		}
	}
	srv := byName["GET"]
	if srv.ParentSpanID != clientSpanID {
		t.Errorf("server span's parent = %q; want the client's %s", srv.ParentSpanID, clientSpanID)
	}
	for k, want := range map[string]string{"url.path": "/p", "server.address": "app.test", "agimo.route": "app.test",
		"http.response.status_code": "200", "client.address": "127.0.0.1",
		"http.request_id": r.resp.Header.Get("X-Request-Id")} {
		if got := srv.Attrs[k]; got != want {
			t.Errorf("server span %s = %q; want %q", k, got, want)
		}
	}
	for _, name := range []string{"park", "wake", "upstream"} {
		if s, ok := byName[name]; !ok || s.ParentSpanID != srv.SpanID {
			t.Errorf("%s span %+v; want a child of the server span %s", name, s, srv.SpanID)
		}
	}
	upSpan := byName["upstream"]
	if upSpan.Attrs["network.peer.address"] != "127.0.0.1" || upSpan.Attrs["http.response.status_code"] != "200" {
		t.Errorf("upstream span attributes %v; want peer 127.0.0.1, status 200", upSpan.Attrs)
	}
	head := up.received()[0]
	if got, n := headerLine(head, "traceparent"); got != "00-"+clientTraceID+"-"+upSpan.SpanID+"-01" || n != 1 {
		t.Errorf("upstream traceparent = %q (%d lines); want the upstream span %s as parent", got, n, upSpan.SpanID)
	}
	if got, _ := headerLine(head, "tracestate"); got != clientTracestate {
		t.Errorf("upstream tracestate = %q; want %q", got, clientTracestate)
	}
}

// A WebSocket tunnel's span ends when the tunnel does, with status 101.
func TestTracingTunnelSpan(t *testing.T) {
	tr, rcv := startTracer(t, nil)
	h := startHarness(t, oneService, func(o *proxy.Options) { o.Tracer = tr })
	up := wsUpstream(t, wsEcho)
	h.setEndpoints("apps", "app", true, up.addr())
	// Ready before the handshake: one that parked would add a park span.
	h.waitReady("app.test")
	c := h.dialWS(t, "/ws")
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hi" {
		t.Fatalf("echo = %q, %v; want hi", msg, err)
	}
	if err := tr.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rcv.Named("GET"); len(got) != 0 {
		t.Fatalf("spans while the tunnel is open: %+v; want none", got)
	}
	c.Close()
	spans := rcv.WaitFor(t, func() error { return tr.Flush(context.Background()) }, func(s []otlptest.Span) bool {
		return len(s) == 2
	})
	for _, s := range spans {
		if s.Name == "GET" && (s.Attrs["http.response.status_code"] != "101" || s.Attrs["url.path"] != "/ws") {
			t.Errorf("tunnel span %+v; want status 101, path /ws", s)
		}
	}
}

// An unreachable collector never stops requests: each is served, each
// failed export is counted, and the failure is logged once.
func TestTracingUnreachableCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	ln.Close() // connections are refused
	var logs syncBuffer
	set := metrics.NewSet()
	tr, err := tracing.New(tracing.Options{Endpoint: endpoint, Sample: 1, Metrics: set, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	h := startHarness(t, oneService, func(o *proxy.Options) { o.Tracer = tr })
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	h.setEndpoints("apps", "app", true, up.addr())
	const requests = 3
	for i := range requests {
		resp, body, err := h.get("app.test", "/")
		if err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %v, %v; want 200 ok", i, resp, err)
		}
		// Its span ends a moment after the response: wait for the export
		// that carries it to fail.
		for deadline := time.Now().Add(10 * time.Second); set.GetOrCreateCounter("agimo_tracing_export_errors_total").Get() < uint64(i+1); {
			if err := tr.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("export errors = %d after request %d; want %d", set.GetOrCreateCounter("agimo_tracing_export_errors_total").Get(), i, i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := strings.Count(logs.String(), "OTLP trace export failed"); n != 1 {
		t.Errorf("log lines about the failed export = %d; want 1:\n%s", n, logs.String())
	}
}
