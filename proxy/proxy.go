// Package proxy is Agimo's HTTP/1.1 front end, the adapter between
// fasthttp and the shared core (package core): it checks each request,
// routes it by its Host (package route), parks it until the service has a
// ready endpoint (package park: the lot for bodiless requests, the
// request's goroutine otherwise), then forwards it (package upstream),
// streaming both bodies. Upgraded connections are handed to package
// tunnel. It also owns what is HTTP/1.1's alone: the connection limit,
// strict parsing, the lingering close, trailers and the waiting page.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/scale"
	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/tunnel"
	"github.com/agimo/agimo/watch"
)

// Readiness is what the proxy needs from package watch.
type Readiness = route.Readiness

// Scaler changes workloads' replicas (watch.Scaler).
type Scaler = scale.Scaler

// Options configure a Proxy beyond its config file.
type Options struct {
	Log     zerolog.Logger
	Metrics *metrics.Set
	// RetryAfter is the Retry-After value, in seconds, of 503 answers.
	RetryAfter int
	// TrustForwarded keeps the client's X-Forwarded-* headers and appends
	// to X-Forwarded-For, for when Agimo sits behind a trusted proxy. By
	// default they are replaced, so a client cannot spoof its address.
	TrustForwarded bool
	// Scaler wakes and idles workloads (wake, idle_after); nil disables both.
	Scaler Scaler
	// AccessLog gets a line per request (nil: off); used only when New
	// makes the core (else the core's is).
	AccessLog *accesslog.Logger
	// Tracer starts the requests' spans (nil: off); used only when New
	// makes the core (else the core's is).
	Tracer *tracing.Tracer
	// Core is the state shared with the other front ends. If nil, New
	// makes one from the options above and Shutdown closes it.
	Core *core.Core
}

// Proxy is the front end. Create it with New, run it with Serve, stop it
// with Shutdown.
type Proxy struct {
	log     zerolog.Logger
	metrics *metrics.Set
	opts    Options
	core    *core.Core
	ownCore bool // made by New, closed by Shutdown

	maxBody int64 // max_request_body; 0 means no limit
	srv     *fasthttp.Server
	// tunnels are the open WebSocket tunnels, which fasthttp's Shutdown
	// neither waits for nor closes (issue 3).
	tunnels *tunnel.Registry
	// conns counts open client connections for max_connections.
	conns *connLimit

	// sendTimeout is the top-level send_timeout, for answers to requests
	// that match no service (a service's follows reloads with its route).
	sendTimeout time.Duration
}

// New builds a Proxy for cfg (already validated) with readiness from r.
func New(cfg *conf.Config, r Readiness, opts Options) (*Proxy, error) {
	c := opts.Core
	if c == nil {
		var err error
		c, err = core.New(cfg, r, core.Options{Log: opts.Log, Metrics: opts.Metrics, RetryAfter: opts.RetryAfter,
			TrustForwarded: opts.TrustForwarded, Scaler: opts.Scaler, AccessLog: opts.AccessLog, Tracer: opts.Tracer})
		if err != nil {
			return nil, err
		}
	}
	p := &Proxy{
		maxBody: cfg.MaxRequestBody.Bytes,
		log:     opts.Log,
		metrics: c.Metrics,
		opts:    opts,
		core:    c,
		ownCore: opts.Core == nil,
		tunnels: tunnel.NewRegistry(),
	}
	p.opts.RetryAfter, p.opts.TrustForwarded = c.Opts.RetryAfter, c.Opts.TrustForwarded
	p.conns = newConnLimit(cfg.MaxConnections, p.opts.RetryAfter)
	p.metrics.GetOrCreateGauge("agimo_open_connections", func() float64 { return float64(p.conns.open.Load()) })
	p.sendTimeout = cfg.SendTimeout.Duration
	p.srv = &fasthttp.Server{
		Handler: p.handle,
		// Bodies stream both ways (issue 2: a 1 GiB upload is never held in
		// memory); multipart bodies are forwarded verbatim, not parsed.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		// Invent no headers the upstream did not send.
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		NoDefaultDate:         true,
		// The largest request head we accept (431 past it) and the time a
		// client has to send it (slowloris; the handler lifts the deadline
		// before streaming a body). max_connections is the listener's
		// (connlimit.go), which counts every connection fasthttp's count
		// misses: fasthttp's must never bind before it, or it would refuse
		// a parked request's replay.
		ReadBufferSize:  int(cfg.MaxHeaderSize.Bytes),
		ReadTimeout:     cfg.ClientHeaderTimeout.Duration,
		Concurrency:     math.MaxInt32,
		IdleTimeout:     75 * time.Second,
		CloseOnShutdown: true,
		// A 4 KiB response and its head fit in one write(2); fasthttp's
		// 4 KiB default split them in two. ReduceMemoryUsage returns the
		// write buffer to its pool while a keep-alive connection idles
		// (the read buffer stays: StreamRequestBody keeps it), so an idle
		// client connection holds 16 KiB, not 24; BenchmarkForward: +0–2%.
		WriteBufferSize:   8 << 10,
		ReduceMemoryUsage: true,
		// Hijacked connections are closed by their owner: the parking lot
		// keeps them open after its hijack handler returns, and the
		// tunnel closes its own.
		KeepHijackedConns: true,
		ErrorHandler:      p.errorHandler,
		Logger:            fasthttpLogger{p.log},
	}
	return p, nil
}

// Serve accepts connections on ln until Shutdown. It returns nil after a
// Shutdown.
func (p *Proxy) Serve(ln net.Listener) error {
	if err := p.srv.Serve(clientListener{ln, p.conns}); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, answers parked requests with 503, and waits
// until in-flight requests finish or ctx is done. It stops the core (the
// parks end), and closes it too if New made it.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.core.Stop()
	// main has already given open tunnels the drain delay; a tunnel has no
	// end of its own to wait for, so close them now (issue 3).
	p.log.Info().Int("tunnels", p.tunnels.Close()).Msg("closed open tunnels")
	// fasthttp waits for every handler, parked ones included (they answer
	// 503 now that the core is stopping), but not for hijacked connections.
	err := p.srv.ShutdownWithContext(ctx)
	if werr := p.tunnels.Wait(ctx); err == nil {
		err = werr
	}
	p.conns.wg.Wait() // connections refused past max_connections
	if p.ownCore {
		if cerr := p.core.Close(ctx); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("shutdown proxy: %w", err)
	}
	return nil
}

// Reload switches the core to cfg (core.Core.Reload).
func (p *Proxy) Reload(ctx context.Context, cfg *conf.Config, u core.KeyUpdater) error {
	return p.core.Reload(ctx, cfg, u)
}

// Keys lists the readiness keys cfg needs, for watch.New.
func Keys(cfg *conf.Config) []watch.Key { return route.Keys(cfg) }

func (p *Proxy) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	var tooBig *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &tooBig):
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
		// The request line itself overflowed the buffer (clientconn.go).
		if requestLineOpen(ctx.Conn()) {
			status = fasthttp.StatusRequestURITooLong
		}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = fasthttp.StatusRequestEntityTooLarge
	}
	p.log.Debug().Err(err).Str("remote", ctx.RemoteAddr().String()).Int("status", status).Msg("bad request")
	p.bindSend(ctx, nil)
	ctx.SetConnectionClose()
	// The rest of a bad request, its body above all, stays unread.
	markLinger(ctx)
	ctx.Error(fasthttp.StatusMessage(status)+"\n", status)
	// Whatever of the head was parsed is all there is to log.
	x := exchangeOf(ctx)
	x.begin(ctx, p.core.AccessLog, false, p.core.Tracer)
	x.reason = reasonBadRequest
	x.finish(ctx)
}

// fasthttpLogger sends fasthttp's own messages to zerolog at debug level:
// they are per-connection events (a client sent garbage), not ours to warn on.
type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug().Msgf(format, args...)
}
