package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Tracing off costs the hot path nothing: the tracing steps of a request
// forwarded at once (its record's start, the upstream's traceparent, the
// attempt, the result, the end) allocate nothing with a nil tracer.
func TestTracingOffAllocatesNothing(t *testing.T) {
	var req fasthttp.Request
	req.Header.SetRequestURI("/p?q=1")
	req.Header.SetHost("app.test")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	var x exchange
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		x.begin(&ctx, nil, true, nil)
		x.traceUpstream(&ctx.Request.Header)
		x.tr.Attempt("10.0.0.1:8080")
		x.tr.Park(now, now, nil)
		x.tr.UpstreamDone(200, nil)
		x.status = 200
		x.emit()
	})
	if allocs != 0 {
		t.Errorf("allocations per request with tracing off = %v; want 0", allocs)
	}
	if got := string(ctx.Request.Header.Peek("traceparent")); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent = %q; want the client's, untouched", got)
	}
}
