package proxy_test

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/proxy"
	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/tracing/otlptest"
)

// BenchmarkForward compares a small GET sent straight to a fasthttp
// upstream (the baseline) with the same GET through Agimo, over
// keep-alive connections from parallel clients. Run with -benchmem: the
// allocations per request are the proxy's hot-path cost.
//
//	go test -run '^$' -bench Forward -benchmem ./proxy
func BenchmarkForward(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("Hello, World!")
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go srv.Serve(ln)
	defer srv.Shutdown()
	h := startHarness(b, oneService)
	h.setEndpoints("apps", "app", true, ln.Addr().String())

	run := func(b *testing.B, addr string) {
		c := &fasthttp.HostClient{Addr: addr, MaxConns: 512}
		b.ReportAllocs()
		// The process's CPU time per request (client, proxy and upstream
		// alike), steadier than ns/op on a machine shared with others.
		cpu0 := cpuTime()
		defer func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }()
		b.RunParallel(func(pb *testing.PB) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://app.test/")
			for pb.Next() {
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Errorf("do: %v %d", err, resp.StatusCode())
					return
				}
			}
		})
	}
	// The same through a proxy that writes an access log line per request
	// (issue 14: its cost; the goal is ≤ 10% more CPU per request).
	al, err := accesslog.New(io.Discard, accesslog.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer al.Close(context.Background())
	hl := startHarness(b, oneService, func(o *proxy.Options) { o.AccessLog = al })
	hl.setEndpoints("apps", "app", true, ln.Addr().String())
	// And through one that traces every request (issue 14), exporting to
	// a receiver in this process.
	rcv := otlptest.Start(b)
	tr, err := tracing.New(tracing.Options{Endpoint: rcv.URL, Sample: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	ht := startHarness(b, oneService, func(o *proxy.Options) { o.Tracer = tr })
	ht.setEndpoints("apps", "app", true, ln.Addr().String())
	b.Run("direct", func(b *testing.B) { run(b, ln.Addr().String()) })
	b.Run("agimo", func(b *testing.B) { run(b, h.addr) })
	b.Run("agimo-log", func(b *testing.B) { run(b, hl.addr) })
	b.Run("agimo-trace", func(b *testing.B) { run(b, ht.addr) })
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
