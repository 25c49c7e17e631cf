package proxy

import (
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// handle is the fasthttp handler for every request.
func (p *Proxy) handle(ctx *fasthttp.RequestCtx) {
	r, status := p.lookup(ctx)
	if status != 0 {
		p.log.Debug().Bytes("host", ctx.Request.Header.Host()).Int("status", status).
			Str("remote", ctx.RemoteAddr().String()).Msg("no route")
		p.reply(ctx, status, fasthttp.StatusMessage(status))
		return
	}
	p.inflight.Add(1)
	defer p.inflight.Done()
	r.m.requests.Inc()
	r.m.active.Inc()
	// A streamed response stays active until its body is written; then the
	// body's Close decrements (issue 3: an SSE request is active for life).
	handedOff := false
	defer func() {
		if !handedOff {
			r.m.active.Dec()
		}
	}()

	deadline := time.Now().Add(r.timeout)
	st := r.ready.State()
	if !st.Ready {
		var err error
		if st, err = p.park(ctx, r, deadline); err != nil {
			p.parkFailed(ctx, r, err)
			return
		}
	}
	if isUpgrade(&ctx.Request.Header) {
		// WebSocket: the connection becomes a tunnel (issue 3).
		handedOff = p.upgrade(ctx, r, st, deadline)
		return
	}
	handedOff = p.forward(ctx, r, st, deadline)
}

// parkFailed answers a request whose park ended without readiness.
func (p *Proxy) parkFailed(ctx *fasthttp.RequestCtx, r *route, err error) {
	switch {
	case errors.Is(err, errClientGone):
		// Nobody to answer; nginx would log 499.
		p.log.Debug().Str("host", r.host).Msg("client left while parked")
		ctx.SetConnectionClose()
	case errors.Is(err, errStopping):
		p.retryLater(ctx, "agimo is shutting down")
	default:
		r.m.timeouts.Inc()
		p.log.Debug().Str("host", r.host).Dur("timeout", r.timeout).Msg("park timed out")
		p.retryLater(ctx, "service "+r.host+" did not become ready within "+r.timeout.String())
	}
}

// retryLater answers 503 with Retry-After. Nothing was sent upstream.
func (p *Proxy) retryLater(ctx *fasthttp.RequestCtx, msg string) {
	var b [20]byte
	ctx.Response.Header.SetBytesV(fasthttp.HeaderRetryAfter, strconv.AppendInt(b[:0], int64(p.opts.RetryAfter), 10))
	p.reply(ctx, fasthttp.StatusServiceUnavailable, msg)
}

// reply sends Agimo's own short plain-text response. A request body the
// client may still be sending is not read, so the connection must close:
// otherwise the body's bytes would be parsed as the next request (issue 2).
func (p *Proxy) reply(ctx *fasthttp.RequestCtx, status int, msg string) {
	if !bodyConsumed(ctx) {
		ctx.SetConnectionClose()
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(msg + "\n")
}

// bodyConsumed reports whether the request has no body left to read.
func bodyConsumed(ctx *fasthttp.RequestCtx) bool {
	return ctx.Request.Header.ContentLength() == 0
}
