package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/watch"
)

// forward sends the request to a ready endpoint of r and relays the
// response. If counted, the request is in the route's active gauge, and
// forward reports whether the response body stream took the gauge over
// (to decrement it when the body has been written).
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, r *route, st *watch.State, deadline time.Time, counted bool) bool {
	req := &ctx.Request
	clientClose := req.Header.ConnectionClose()
	prepareRequest(ctx, p.opts.TrustForwarded)
	// Do drops the body stream once sent; its reader stays, to tell a
	// client's failure from the upstream's.
	cb, _ := req.BodyStream().(*clientBody)

	resp := fasthttp.AcquireResponse()
	// Without this, reading the upstream's head would report fasthttp's
	// default Content-Type for a response that has none.
	resp.Header.SetNoDefaultContentType(true)
	var err error
	for attempt := 0; ; attempt++ {
		addr := r.target
		if addr == "" {
			addr = st.Addrs[int(r.next.Add(1)-1)%len(st.Addrs)]
		}
		err = p.pools.get(addr, r.upstreamTimeout, r.timeout).Do(req, resp)
		if err == nil && resp.StatusCode() == fasthttp.StatusSwitchingProtocols {
			// A 101 to a request that asked for no upgrade: nothing sane
			// can follow it on this connection.
			resp.SetConnectionClose()
			err = errUnsolicited101
		}
		if err == nil || !isRefused(err) {
			break
		}
		// An endpoint just announced ready may not listen yet, and an
		// endpoint being removed may already be gone: retry (another
		// endpoint, or this one after a short pause) until the request's
		// deadline rather than answering 502 (issue 2).
		r.m.errs[errRefused].Inc()
		p.log.Debug().Str("host", r.host).Str("upstream", addr).Err(err).Msg("connection refused; retrying")
		if st, err = p.awaitRetry(ctx, r, attempt, deadline); err != nil {
			break
		}
	}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		if cb != nil && cb.err != nil {
			// The client's body failed first, and fasthttp may report its
			// own error for that ("copied 20480 bytes from body stream
			// instead of 10485760"): blame the body, not the upstream.
			err = cb.err
		}
		p.upstreamFailed(ctx, r, err)
		return false
	}

	r.readyCold() // a cold start may end without a parked request (waiting page)
	r.firstByteCold()
	copyResponseHead(&ctx.Response.Header, &resp.Header)
	if clientClose {
		ctx.SetConnectionClose()
	}
	if req.Header.IsHead() || !bodyAllowed(resp.StatusCode()) {
		// No body follows, but a HEAD's Content-Length describes the GET's.
		if n := resp.Header.ContentLength(); n >= 0 && resp.StatusCode() != fasthttp.StatusNoContent {
			ctx.Response.Header.SetContentLength(n)
		}
		ctx.Response.SkipBody = true
		fasthttp.ReleaseResponse(resp) // closes the (empty) body stream
		return false
	}
	n := resp.Header.ContentLength()
	if n == -2 {
		// Close-delimited upstream body: send it chunked to the client.
		n = -1
	}
	// Flush the head at once so a client of a slow stream (SSE) sees the
	// response before its first event.
	ctx.Response.ImmediateHeaderFlush = n < 0
	b := &upstreamBody{resp: resp}
	if n == -1 && resp.Header.ContentLength() == -1 {
		b.conn, _ = resp.LocalAddr().(*upstreamAddr)
		b.trailer = &ctx.Response.Header
	}
	if counted {
		b.active = r.m.active
	}
	ctx.Response.SetBodyStream(b, n)
	return counted
}

// awaitRetry pauses before the next attempt after a refused connection,
// waking early if readiness changes. If the service is no longer ready it
// parks again. It returns the state to use, or an error once the deadline
// has passed, the client left or the proxy is stopping.
func (p *Proxy) awaitRetry(ctx *fasthttp.RequestCtx, r *route, attempt int, deadline time.Time) (*watch.State, error) {
	st := r.ready.State()
	if !st.Ready {
		return p.park(ctx, r, deadline)
	}
	if attempt < len(st.Addrs)-1 && r.target == "" {
		return st, nil // try the next endpoint at once
	}
	wait := min(10*time.Millisecond<<min(attempt, 5), 250*time.Millisecond, time.Until(deadline))
	if wait <= 0 {
		return nil, errParkTimeout
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-st.Changed():
	case <-p.stopping:
		return nil, errStopping
	}
	if st = r.ready.State(); !st.Ready {
		return p.park(ctx, r, deadline)
	}
	return st, nil
}

// upstreamFailed answers a request whose upstream exchange failed: 504 for
// an upstream that stayed silent, 503 if the service never accepted the
// connection before the deadline, 502 otherwise.
func (p *Proxy) upstreamFailed(ctx *fasthttp.RequestCtx, r *route, err error) {
	kind := errorKind(err)
	switch {
	case errors.Is(err, errClientGone):
		ctx.SetConnectionClose()
		return
	case errors.Is(err, errBodyTooLarge):
		p.reply(ctx, fasthttp.StatusRequestEntityTooLarge, "request body too large")
		return
	case errors.As(err, new(clientBodyError)):
		p.clientFailed(ctx, r, err)
		return
	case kind == errPoolFull:
		r.m.errs[errPoolFull].Inc()
		p.log.Debug().Str("host", r.host).Dur("timeout", r.timeout).Msg("no free upstream connection")
		p.retryLater(ctx, "no free connection to service "+r.host+" within "+r.timeout.String())
		return
	case errors.Is(err, errParkFull):
		r.m.rejected.Inc()
		p.coldRetry(ctx, r, "too many requests waiting for service "+r.host)
		return
	case errors.Is(err, errStopping):
		p.retryLater(ctx, "agimo is shutting down")
		return
	case errors.Is(err, errParkTimeout) || kind == errRefused:
		r.m.timeouts.Inc()
		p.coldRetry(ctx, r, "service "+r.host+" did not accept connections within "+r.timeout.String())
		return
	}
	r.m.errs[kind].Inc()
	p.log.Debug().Str("host", r.host).Str("kind", kind).Err(err).Msg("upstream failed")
	if kind == errTimeout {
		p.reply(ctx, fasthttp.StatusGatewayTimeout, "upstream "+r.host+" timed out")
		return
	}
	p.reply(ctx, fasthttp.StatusBadGateway, "upstream "+r.host+" failed: "+kind)
}

// clientFailed answers a request whose body failed on the client's side:
// it stalled past client_body_timeout (408, RFC 9110 §15.5.9), ended
// early (the client closed or reset its connection) or was malformed
// (400). The upstream request is abandoned (fasthttp closes its
// connection, which frees it for others) and the client's stream is out
// of step, so its connection closes. It counts in agimo_client_errors_total,
// never as an upstream error (issue 10).
func (p *Proxy) clientFailed(ctx *fasthttp.RequestCtx, r *route, err error) {
	kind, status, msg := clientBadBody, fasthttp.StatusBadRequest, "malformed request body"
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		kind, status = clientBodyTimeout, fasthttp.StatusRequestTimeout
		msg = "no request body byte within " + r.bodyTimeout.String()
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errTruncated), errors.Is(err, syscall.ECONNRESET), sawEOF(ctx.Conn()):
		kind, msg = clientAborted, "request body incomplete"
	}
	r.m.clientErrs[kind].Inc()
	p.log.Debug().Str("host", r.host).Str("kind", kind).Err(err).Msg("request body failed")
	ctx.SetConnectionClose()
	p.reply(ctx, status, msg)
}

// sawEOF reports whether client connection c has reported EOF.
func sawEOF(c net.Conn) bool {
	w, ok := c.(eofWatcher)
	return ok && w.sawEOF()
}

func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return errPoolFull
	case isRefused(err):
		return errRefused
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case isDialError(err):
		return errDial
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errClosed
	}
	// What is left is either an I/O failure or fasthttp rejecting what
	// the upstream sent (a malformed status line, head or chunk).
	var errno syscall.Errno
	if errors.As(err, &ne) || errors.As(err, &errno) {
		return errOther
	}
	return errProtocol
}

var errUnsolicited101 = errors.New("101 Switching Protocols to a request without Upgrade")

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// bodyAllowed reports whether a response with this status may have a body
// (RFC 9110 §6.4.1: not 1xx, 204 or 304).
func bodyAllowed(status int) bool {
	return status >= 200 && status != fasthttp.StatusNoContent && status != fasthttp.StatusNotModified
}

// copyResponseHead relays the upstream's status and end-to-end headers.
// It copies header by header rather than with CopyTo, which would also
// copy fasthttp's per-connection flags (connection close, default Date)
// from the upstream's side to the client's. Framing headers are left to
// fasthttp, which re-frames the body for the client.
func copyResponseHead(dst, src *fasthttp.ResponseHeader) {
	dst.SetStatusCode(src.StatusCode())
	dst.SetNoDefaultContentType(true)
	if m := src.StatusMessage(); len(m) > 0 {
		dst.SetStatusMessage(m)
	}
	listed := connectionListed(src)
	for k, v := range src.All() {
		if !isFraming(k) && !isHopByHop(k, listed) && !bytes.EqualFold(k, hTrailer) {
			dst.AddBytesKV(k, v)
		}
	}
	announceTrailers(dst, src, listed)
}

// upstreamBody streams the upstream response to the client. Close, which
// fasthttp calls once the body is written or the client is gone, returns
// the upstream connection to its pool (or closes it if unfinished) and ends
// the request's activity.
type upstreamBody struct {
	resp   *fasthttp.Response
	active *metrics.Gauge // nil for requests not counted (probes)
	// conn is the upstream connection of a chunked response (clientconn.go).
	conn eofWatcher
	// trailer is the client's response header of a chunked response: its
	// trailer section, which fasthttp writes after the last chunk, gets
	// the upstream's once the body has been read (trailers.go).
	trailer *fasthttp.ResponseHeader
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.resp.BodyStream().Read(p)
	if err == io.EOF && b.conn != nil {
		// fasthttp's server then closes the client connection without
		// the last chunk, so the client too sees the response cut short.
		err = chunkedEnd(err, b.conn)
	}
	if err == io.EOF && b.trailer != nil {
		copyTrailers(b.trailer, b.resp.Header.TrailerHeader(), connectionListed(&b.resp.Header))
		b.trailer = nil
	}
	return n, err
}

func (b *upstreamBody) Close() error {
	err := b.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(b.resp)
	if b.active != nil {
		b.active.Dec()
	}
	return err
}
