package h2_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/tracing/otlptest"
)

const (
	clientTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID      = "00f067aa0ba902b7"
	clientTraceparent = "00-" + clientTraceID + "-" + clientSpanID + "-01"
	clientTracestate  = "congo=t61rcWkgMzE,  rojo=00f067aa0ba902b7"
)

// traceFields is what an upstream received of the W3C Trace Context.
type traceFields struct{ traceparent, tracestate []string }

// traceUpstream starts an upstream of protocol appProto ("" for
// HTTP/1.1, route.AppProtocolH2C) that sends the trace fields of each
// request it gets to the returned channel.
func traceUpstream(t *testing.T, appProto string) (string, <-chan traceFields) {
	got := make(chan traceFields, 4)
	f := func(w http.ResponseWriter, r *http.Request) {
		got <- traceFields{r.Header.Values("Traceparent"), r.Header.Values("Tracestate")}
		w.Write([]byte("ok"))
	}
	if appProto == "" {
		return newH1UpstreamFunc(t, f).addr(), got
	}
	return startH2CApp(t, f), got
}

var upstreamProtocols = []struct{ name, appProto string }{{"h1", ""}, {"h2c", route.AppProtocolH2C}}

// Tracing off, an HTTP/2 stream's traceparent and tracestate reach the
// upstream as the client sent them, over HTTP/1.1 and h2c alike.
func TestTraceContextForwardedWhenOff(t *testing.T) {
	for _, tc := range upstreamProtocols {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, oneService)
			addr, got := traceUpstream(t, tc.appProto)
			h.setEndpoints("apps", "app", tc.appProto, true, addr)
			h.waitReady("app.test")
			r := get(t, h2cClient(t, h.addr), "http://app.test/", "traceparent", clientTraceparent, "tracestate", clientTracestate)
			if r.resp.StatusCode != 200 {
				t.Fatalf("status %d; want 200", r.resp.StatusCode)
			}
			f := <-got
			if len(f.traceparent) != 1 || f.traceparent[0] != clientTraceparent {
				t.Errorf("upstream traceparent = %q; want [%q]", f.traceparent, clientTraceparent)
			}
			if len(f.tracestate) != 1 || f.tracestate[0] != clientTracestate {
				t.Errorf("upstream tracestate = %q; want [%q]", f.tracestate, clientTracestate)
			}
		})
	}
}

// Tracing on, a parked stream yields a server span (child of the client's
// traceparent) ending with the stream, with park and upstream spans under
// it; the upstream's traceparent names the upstream span as parent.
func TestTracingParkedStream(t *testing.T) {
	for _, tc := range upstreamProtocols {
		t.Run(tc.name, func(t *testing.T) {
			rcv := otlptest.Start(t)
			tr, err := tracing.New(tracing.Options{Endpoint: rcv.URL, Sample: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Shutdown(context.Background()) })
			h := startHarnessWith(t, oneService, harnessOpts{tracer: tr})
			addr, got := traceUpstream(t, tc.appProto)
			req, _ := http.NewRequest(http.MethodGet, "http://app.test/s?q=1", nil)
			req.Header.Set("traceparent", clientTraceparent)
			req.Header.Set("tracestate", clientTracestate)
			done := send(h2cClient(t, h.addr), req)
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
			h.setEndpoints("apps", "app", tc.appProto, true, addr)
			r := <-done
			if r.err != nil || r.resp.StatusCode != 200 {
				t.Fatalf("got %v, %v; want 200", r.resp, r.err)
			}
			spans := rcv.WaitFor(t, func() error { return tr.Flush(context.Background()) },
				func(s []otlptest.Span) bool { return len(s) == 3 })
			byName := map[string]otlptest.Span{}
			for _, s := range spans {
				byName[s.Name] = s
				if s.TraceID != clientTraceID {
					t.Errorf("span %s in trace %s; want %s", s.Name, s.TraceID, clientTraceID)
				}
			}
			srv := byName["GET"]
			if srv.ParentSpanID != clientSpanID || srv.Attrs["network.protocol.version"] != "2" ||
				srv.Attrs["url.path"] != "/s" || srv.Attrs["http.request_id"] != r.resp.Header.Get("X-Request-Id") {
				t.Errorf("server span %+v; want parent %s, HTTP/2, path /s, the request's ID", srv, clientSpanID)
			}
			for _, name := range []string{"park", "upstream"} {
				if s, ok := byName[name]; !ok || s.ParentSpanID != srv.SpanID {
					t.Errorf("%s span %+v; want a child of the server span %s", name, s, srv.SpanID)
				}
			}
			f := <-got
			want := "00-" + clientTraceID + "-" + byName["upstream"].SpanID + "-01"
			if len(f.traceparent) != 1 || f.traceparent[0] != want {
				t.Errorf("upstream traceparent = %q; want [%q]", f.traceparent, want)
			}
			if len(f.tracestate) != 1 || f.tracestate[0] != clientTracestate {
				t.Errorf("upstream tracestate = %q; want [%q]", f.tracestate, clientTracestate)
			}
			if strings.Contains(byName["upstream"].Attrs["network.peer.address"], ":") {
				t.Errorf("upstream peer address %q; want the host alone", byName["upstream"].Attrs["network.peer.address"])
			}
		})
	}
}
