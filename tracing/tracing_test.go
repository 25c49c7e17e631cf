package tracing_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/tracing/otlptest"
)

func TestCheckEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"http://collector:4318", "http://collector:4318/v1/traces", true},
		{"http://collector:4318/", "http://collector:4318/v1/traces", true},
		{"https://collector.example/otlp/v1/traces", "https://collector.example/otlp/v1/traces", true},
		{"collector:4318", "", false},
		{"grpc://collector:4317", "", false},
		{"http://", "", false},
		{"http://[::1", "", false},
	} {
		got, err := tracing.CheckEndpoint(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("CheckEndpoint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--otlp-endpoint")) {
			t.Errorf("CheckEndpoint(%q) = %q, %v; want an error naming --otlp-endpoint", tc.in, got, err)
		}
	}
}

// Off is a nil *Tracer: New returns it for no endpoint, and every call a
// front end makes on it and on its nil *Request allocates nothing.
func TestOffIsNilAndFree(t *testing.T) {
	tr, err := tracing.New(tracing.Options{})
	if tr != nil || err != nil {
		t.Fatalf("New(no endpoint) = %v, %v; want nil, nil", tr, err)
	}
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		r := tr.Start(now, tracing.Inbound{})
		r.Park(now, now, nil)
		r.Wake(now, now, true, nil)
		if r.Upstream() != "" {
			t.Fatal("traceparent when off")
		}
		r.Attempt("10.0.0.1:80")
		r.UpstreamDone(200, nil)
		r.End(200, "app.test", "")
	})
	if allocs != 0 {
		t.Errorf("allocations off = %v; want 0", allocs)
	}
	if err := tr.Flush(context.Background()); err != nil {
		t.Error(err)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

const (
	clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan  = "00f067aa0ba902b7"
)

// A request's spans: the server span continues the client's trace, the
// park, wake and upstream spans are its children, and the traceparent
// for the upstream names the upstream span as parent (W3C Trace Context
// §3.2).
func TestRequestSpans(t *testing.T) {
	rcv := otlptest.Start(t)
	tr, err := tracing.New(tracing.Options{Endpoint: rcv.URL, Sample: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	start := time.Now()
	r := tr.Start(start, tracing.Inbound{
		Traceparent: "00-" + clientTrace + "-" + clientSpan + "-01", Tracestate: "vendor=x",
		Method: "GET", Host: "app.test", Path: "/p", Client: "192.0.2.1:5000", RequestID: "rid-1", Proto: "1.1",
	})
	r.Park(start, start.Add(time.Second), nil)
	r.Wake(start, start.Add(100*time.Millisecond), true, nil)
	tp := r.Upstream()
	r.Attempt("10.0.0.1:8080")
	r.Attempt("10.0.0.2:8080")
	r.UpstreamDone(200, nil)
	r.End(200, "app.test", "")

	spans := rcv.WaitFor(t, func() error { return tr.Flush(context.Background()) },
		func(s []otlptest.Span) bool { return len(s) == 4 })
	byName := map[string]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = s
		if s.TraceID != clientTrace {
			t.Errorf("%s: trace ID %s; want the client's %s", s.Name, s.TraceID, clientTrace)
		}
		if s.Service != "agimo" {
			t.Errorf("%s: service.name %q; want agimo", s.Name, s.Service)
		}
	}
	srv := byName["GET"]
	if srv.ParentSpanID != clientSpan || srv.Kind.String() != "SPAN_KIND_SERVER" {
		t.Errorf("server span: parent %s kind %v; want parent %s, server", srv.ParentSpanID, srv.Kind, clientSpan)
	}
	for k, v := range map[string]string{"http.request.method": "GET", "server.address": "app.test", "url.path": "/p",
		"client.address": "192.0.2.1", "http.request_id": "rid-1", "http.response.status_code": "200", "agimo.route": "app.test"} {
		if srv.Attrs[k] != v {
			t.Errorf("server span %s = %q; want %q", k, srv.Attrs[k], v)
		}
	}
	for _, name := range []string{"park", "wake", "upstream"} {
		if s, ok := byName[name]; !ok || s.ParentSpanID != srv.SpanID {
			t.Errorf("%s span: %+v; want a child of the server span %s", name, s, srv.SpanID)
		}
	}
	if got := byName["park"].End.Sub(byName["park"].Start); got != time.Second {
		t.Errorf("park span lasts %v; want 1s", got)
	}
	up := byName["upstream"]
	if want := "00-" + clientTrace + "-" + up.SpanID + "-01"; tp != want {
		t.Errorf("traceparent for the upstream = %q; want %q", tp, want)
	}
	if up.Kind.String() != "SPAN_KIND_CLIENT" || up.Attrs["network.peer.address"] != "10.0.0.2" ||
		up.Attrs["agimo.upstream.attempts"] != "2" || len(up.Events) != 1 || up.Events[0] != "retry" {
		t.Errorf("upstream span = %+v; want client kind, peer 10.0.0.2, 2 attempts, one retry event", up)
	}
	if byName["wake"].Attrs["agimo.wake.scaled"] != "true" {
		t.Errorf("wake span attrs = %v; want agimo.wake.scaled true", byName["wake"].Attrs)
	}
}

// Without a (valid) traceparent from the client, the request starts a
// new trace; a parked request that timed out marks its park and server
// spans as errors.
func TestRequestNewTraceAndErrors(t *testing.T) {
	rcv := otlptest.Start(t)
	tr, err := tracing.New(tracing.Options{Endpoint: rcv.URL + "/v1/traces", Sample: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	now := time.Now()
	r := tr.Start(now, tracing.Inbound{Traceparent: "00-garbage", Method: "POST", Client: "[::1]:1"})
	r.Park(now, now, errors.New("service not ready before timeout"))
	r.End(503, "app.test", "park_timeout")
	spans := rcv.WaitFor(t, func() error { return tr.Flush(context.Background()) },
		func(s []otlptest.Span) bool { return len(s) == 2 })
	for _, s := range spans {
		if s.TraceID == clientTrace || s.TraceID == "" || !s.Error {
			t.Errorf("%s: trace %q error %v; want a new trace, error", s.Name, s.TraceID, s.Error)
		}
		if s.Name == "POST" && (s.ParentSpanID != "" || s.Attrs["agimo.reason"] != "park_timeout") {
			t.Errorf("server span %+v; want a root with agimo.reason park_timeout", s)
		}
	}
}

// An unreachable collector costs requests nothing: every failed export is
// counted, the failure is logged once, and spans keep being accepted.
func TestUnreachableCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused
	var logs strings.Builder
	set := metrics.NewSet()
	tr, err := tracing.New(tracing.Options{Endpoint: "http://" + addr, Sample: 1,
		Log: zerolog.New(&logs), Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	const exports = 3
	for range exports {
		r := tr.Start(time.Now(), tracing.Inbound{Method: "GET"})
		r.End(200, "", "")
		if err := tr.Flush(context.Background()); err != nil {
			t.Fatalf("flush: %v", err)
		}
	}
	if got := set.GetOrCreateCounter("agimo_tracing_export_errors_total").Get(); got != exports {
		t.Errorf("agimo_tracing_export_errors_total = %d; want %d", got, exports)
	}
	if n := strings.Count(logs.String(), "OTLP trace export failed"); n != 1 {
		t.Errorf("log lines about the failure = %d; want 1:\n%s", n, logs.String())
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []tracing.Options{
		{Endpoint: "collector:4318", Sample: 1},
		{Endpoint: "http://collector:4318", Sample: 1.5},
	} {
		if tr, err := tracing.New(o); err == nil {
			tr.Shutdown(context.Background())
			t.Errorf("New(%+v): no error; want one", o)
		}
	}
}

// BenchmarkRequest is a request's spans, off (a nil *Tracer) and on (to
// a receiver; export runs on the batch processor's goroutine).
func BenchmarkRequest(b *testing.B) {
	run := func(b *testing.B, tr *tracing.Tracer) {
		b.ReportAllocs()
		in := tracing.Inbound{Traceparent: "00-" + clientTrace + "-" + clientSpan + "-01", Method: "GET",
			Host: "app.test", Path: "/", Client: "192.0.2.1:5000", RequestID: "0123456789abcdef", Proto: "1.1"}
		for b.Loop() {
			r := tr.Start(time.Now(), in)
			_ = r.Upstream()
			r.Attempt("10.0.0.1:8080")
			r.UpstreamDone(200, nil)
			r.End(200, "app.test", "")
		}
	}
	b.Run("off", func(b *testing.B) { run(b, nil) })
	rcv := otlptest.Start(b)
	tr, err := tracing.New(tracing.Options{Endpoint: rcv.URL, Sample: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	b.Run("on", func(b *testing.B) { run(b, tr) })
}
