package proxy

import (
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/upstream"
)

// handle is the fasthttp handler for every request.
func (p *Proxy) handle(ctx *fasthttp.RequestCtx) {
	var r *route.Route
	x := exchangeOf(ctx)
	defer x.finish(ctx)
	if rc, ok := ctx.Conn().(*replayConn); ok && rc.pending {
		// A request released from the lot: routed and counted when it
		// parked, and still active. Its head is the client's as received,
		// with the ID it got then (headWithID); prepareRequest makes Host
		// agree with its route, as for any.
		rc.pending = false
		r = rc.route
		*x = *rc.rec
		p.bindSend(ctx, r)
	} else {
		x.begin(ctx, p.core.AccessLog, p.core.TrustRequestID(), p.core.Tracer)
		if status, why := checkRequest(ctx); status != 0 {
			x.reason = reasonBadRequest
			p.bindSend(ctx, nil)
			p.log.Debug().Str("remote", ctx.RemoteAddr().String()).Int("status", status).Str("reason", why).Msg("request rejected")
			ctx.SetConnectionClose()
			p.reply(ctx, status, why)
			return
		}
		var status int
		if r, status = p.lookup(ctx); status != 0 {
			x.reason = reasonNoRoute
			if status == fasthttp.StatusBadRequest {
				x.reason = reasonBadRequest
			}
			p.bindSend(ctx, nil)
			p.log.Debug().Bytes("host", ctx.Request.Header.Host()).Int("status", status).
				Str("remote", ctx.RemoteAddr().String()).Msg("no route")
			p.reply(ctx, status, fasthttp.StatusMessage(status))
			return
		}
		x.route = r
		p.bindSend(ctx, r)
		if p.answer(ctx, r) {
			return
		}
		if isProbe(ctx, r) {
			p.serveProbe(ctx, r)
			return
		}
		if r.Svc.HTTPSRedirect && !overTLS(ctx.Conn()) {
			x.reason = reasonRedirect
			p.redirectHTTPS(ctx)
			return
		}
		r.CountRequest()
	}
	// A streamed response stays active until its body is written; then the
	// body's Close decrements (issue 3: an SSE request is active for life).
	handedOff := false
	defer func() {
		if !handedOff {
			r.EndRequest()
		}
	}()

	if n, hasBody := requestBody(ctx); hasBody {
		if p.maxBody > 0 && int64(n) > p.maxBody {
			p.log.Debug().Str("host", r.Host).Int("length", n).Msg("request body over max_request_body")
			x.reason = reasonBodyTooLarge
			p.reply(ctx, fasthttp.StatusRequestEntityTooLarge, "request body larger than "+strconv.FormatInt(p.maxBody, 10)+" bytes")
			return
		}
		body := ctx.RequestBodyStream()
		if p.maxBody > 0 && n < 0 {
			// Chunked: the size is known only at the end, so count as it
			// streams and fail the request past the limit.
			body = &limitedBody{r: body, left: p.maxBody}
		}
		cb := &clientBody{r: body, left: int64(n), client: ctx.Conn(), timeout: r.BodyTimeout, x: x}
		if n == -1 {
			cb.conn, _ = ctx.Conn().(upstream.EOFWatcher)
		}
		ctx.Request.SetBodyStream(cb, n)
		// The header timeout's deadline is still armed: lift it, so a
		// request may park; cb bounds each read of the body instead.
		_ = ctx.Conn().SetReadDeadline(time.Time{})
	}

	deadline := time.Now().Add(r.Timeout)
	st := r.Ready.State()
	if !st.Ready && wantsWaitingPage(ctx, r) {
		p.core.Policy.Begin(r, x.tr)
		x.reason = reasonWaitingPage
		p.serveWaitingPage(ctx, r)
		return
	}
	if !st.Ready && canPark(ctx) {
		if handedOff = p.parkInLot(ctx, r, deadline, x); !handedOff {
			p.parkFailed(ctx, r, park.ErrFull)
		}
		return
	}
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
	handedOff = p.forward(ctx, r, st, deadline, true)
}

// bindSend bounds each write of the response to ctx with send_timeout:
// route r's, or the top-level one if r is nil (no route matched). A
// connection serves requests for any host in turn, so it is set for each.
func (p *Proxy) bindSend(ctx *fasthttp.RequestCtx, r *route.Route) {
	c, ok := ctx.Conn().(interface {
		setSend(time.Duration, *route.Route, *zerolog.Logger)
	})
	switch {
	case !ok:
	case r == nil:
		c.setSend(p.sendTimeout, nil, &p.log)
	default:
		c.setSend(r.SendTimeout, r, &p.log)
	}
}

// parkFailed answers a request whose park ended without readiness.
func (p *Proxy) parkFailed(ctx *fasthttp.RequestCtx, r *route.Route, err error) {
	switch {
	case errors.Is(err, park.ErrClientGone):
		// Nobody to answer; nginx would log 499.
		p.log.Debug().Str("host", r.Host).Msg("client left while parked")
		setReason(ctx, reasonClientGone)
		ctx.SetConnectionClose()
	case errors.Is(err, park.ErrStopping):
		setReason(ctx, reasonShutdown)
		p.retryLater(ctx, "agimo is shutting down")
	case errors.Is(err, park.ErrFull):
		setReason(ctx, reasonMaxParked)
		r.M.Rejected.Inc()
		p.log.Debug().Str("host", r.Host).Int64("max_parked", r.MaxParked).Msg("park rejected")
		p.coldRetry(ctx, r, "too many requests waiting for service "+r.Host)
	default:
		setReason(ctx, reasonParkTimeout)
		r.M.Timeouts.Inc()
		p.log.Debug().Str("host", r.Host).Dur("timeout", r.Timeout).Msg("park timed out")
		p.coldRetry(ctx, r, "service "+r.Host+" did not become ready within "+r.Timeout.String())
	}
}

// retryLater answers 503 with Retry-After. Nothing was sent upstream.
func (p *Proxy) retryLater(ctx *fasthttp.RequestCtx, msg string) {
	p.answer503(ctx, p.opts.RetryAfter, msg)
}

func (p *Proxy) answer503(ctx *fasthttp.RequestCtx, retryAfter int, msg string) {
	var b [20]byte
	ctx.Response.Header.SetBytesV(fasthttp.HeaderRetryAfter, strconv.AppendInt(b[:0], int64(retryAfter), 10))
	p.reply(ctx, fasthttp.StatusServiceUnavailable, msg)
}

// reply sends Agimo's own short plain-text response. A request body the
// client may still be sending is not read, so the connection must close:
// otherwise the body's bytes would be parsed as the next request (issue 2).
// It closes lingering, so that the client reads the answer before the
// close, rather than a reset caused by its unread bytes (issue 10).
func (p *Proxy) reply(ctx *fasthttp.RequestCtx, status int, msg string) {
	// After a malformed request the stream may be out of step too.
	if !bodyConsumed(ctx) || status == fasthttp.StatusBadRequest {
		ctx.SetConnectionClose()
		markLinger(ctx)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(msg + "\n")
}

// bodyConsumed reports whether the request has no body left to read.
func bodyConsumed(ctx *fasthttp.RequestCtx) bool {
	_, has := requestBody(ctx)
	return !has
}

// requestBody returns the declared length of the request body (-1 for
// chunked) and whether there is one. fasthttp reports -2 ("identity") for
// a request with neither Content-Length nor Transfer-Encoding, which has
// no body (RFC 9112 §6.3).
func requestBody(ctx *fasthttp.RequestCtx) (int, bool) {
	n := ctx.Request.Header.ContentLength()
	return n, n > 0 || n == -1
}

// errBodyTooLarge fails a chunked request body past max_request_body.
var errBodyTooLarge = errors.New("request body too large")

// limitedBody reads at most left bytes of a request body, then fails.
type limitedBody struct {
	r    io.Reader
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Is there more? A body of exactly the limit is fine.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// redirectHTTPS answers a plain-HTTP request for an https_redirect service
// with 308 to its https URL; not counted: nothing went to the service.
func (p *Proxy) redirectHTTPS(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	host, _ := route.Authority(h.RequestURI(), h.Host())
	ctx.Response.Header.SetBytesV(fasthttp.HeaderLocation, route.HTTPSLocation(host, h.RequestURI()))
	p.reply(ctx, fasthttp.StatusPermanentRedirect, "use https")
}
