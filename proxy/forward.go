package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/fields"
	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/upstream"
	"github.com/agimo/agimo/watch"
)

// forward sends the request to a ready endpoint of r and relays the
// response. If counted, the request is in the route's active gauge, and
// forward reports whether the response body stream took the gauge over
// (to decrement it when the body has been written).
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, r *route.Route, st *watch.State, deadline time.Time, counted bool) bool {
	req := &ctx.Request
	clientClose := req.Header.ConnectionClose()
	prepareRequest(ctx, r, p.opts.TrustForwarded)
	// Do drops the body stream once sent; its reader stays, to tell a
	// client's failure from the upstream's.
	cb, _ := req.BodyStream().(*clientBody)
	x := exchangeOf(ctx)
	x.traceUpstream(&req.Header)
	if r.H2C(st) {
		return p.forwardH2C(ctx, r, st, deadline, counted, clientClose, cb)
	}

	resp := fasthttp.AcquireResponse()
	// Without this, reading the upstream's head would report fasthttp's
	// default Content-Type for a response that has none.
	resp.Header.SetNoDefaultContentType(true)
	err := p.core.Attempt(r, st, deadline, func() (*watch.State, error) { return p.park(ctx, r, deadline) },
		func(addr string) error {
			x.upstream = addr
			x.tr.Attempt(addr)
			err := p.core.Pools.Get(addr, r.UpstreamTimeout, r.Timeout).Do(req, resp)
			if err == nil && resp.StatusCode() == fasthttp.StatusSwitchingProtocols {
				// A 101 to a request that asked for no upgrade: nothing sane
				// can follow it on this connection.
				resp.SetConnectionClose()
				err = errUnsolicited101
			}
			return err
		})
	if err != nil {
		x.tr.UpstreamDone(0, err)
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

	x.tr.UpstreamDone(resp.StatusCode(), nil)
	r.ReadyCold() // a cold start may end without a parked request (waiting page)
	r.FirstByte()
	copyResponseHead(&ctx.Response.Header, &resp.Header)
	r.EditResponse(&ctx.Response.Header)
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
	b := &upstreamBody{resp: resp, x: x}
	x.taken, x.status = true, resp.StatusCode()
	if n == -1 && resp.Header.ContentLength() == -1 {
		b.conn = upstream.ConnOf(resp)
		b.trailer = &ctx.Response.Header
	}
	if counted {
		b.counted = r
	}
	ctx.Response.SetBodyStream(b, n)
	return counted
}

// upstreamFailed answers a request whose upstream exchange failed: 504 for
// an upstream that stayed silent, 503 if the service never accepted the
// connection before the deadline, 502 otherwise.
func (p *Proxy) upstreamFailed(ctx *fasthttp.RequestCtx, r *route.Route, err error) {
	kind := upstream.Kind(err)
	x := exchangeOf(ctx)
	switch {
	case errors.Is(err, park.ErrClientGone):
		x.reason = reasonClientGone
		ctx.SetConnectionClose()
		return
	case errors.Is(err, errBodyTooLarge):
		x.reason = reasonBodyTooLarge
		p.reply(ctx, fasthttp.StatusRequestEntityTooLarge, "request body too large")
		return
	case errors.As(err, new(clientBodyError)):
		p.clientFailed(ctx, r, err)
		return
	case kind == stats.UpstreamPoolFull:
		x.reason = reasonPoolFull
		r.M.Errs[stats.UpstreamPoolFull].Inc()
		p.log.Debug().Str("host", r.Host).Dur("timeout", r.Timeout).Msg("no free upstream connection")
		p.retryLater(ctx, "no free connection to service "+r.Host+" within "+r.Timeout.String())
		return
	case errors.Is(err, park.ErrFull):
		x.reason = reasonMaxParked
		r.M.Rejected.Inc()
		p.coldRetry(ctx, r, "too many requests waiting for service "+r.Host)
		return
	case errors.Is(err, park.ErrStopping):
		x.reason = reasonShutdown
		p.retryLater(ctx, "agimo is shutting down")
		return
	case errors.Is(err, park.ErrTimeout) || kind == stats.UpstreamRefused:
		x.reason = reasonParkTimeout
		if kind == stats.UpstreamRefused {
			x.reason = reasonUpstreamRefused
		}
		r.M.Timeouts.Inc()
		p.coldRetry(ctx, r, "service "+r.Host+" did not accept connections within "+r.Timeout.String())
		return
	}
	r.M.Errs[kind].Inc()
	p.log.Debug().Str("host", r.Host).Str("kind", kind).Err(err).Msg("upstream failed")
	x.reason = "upstream_" + kind
	if kind == stats.UpstreamTimeout {
		p.reply(ctx, fasthttp.StatusGatewayTimeout, "upstream "+r.Host+" timed out")
		return
	}
	p.reply(ctx, fasthttp.StatusBadGateway, "upstream "+r.Host+" failed: "+kind)
}

// clientFailed answers a request whose body failed on the client's side:
// it stalled past client_body_timeout (408, RFC 9110 §15.5.9), ended
// early (the client closed or reset its connection) or was malformed
// (400). The upstream request is abandoned (fasthttp closes its
// connection, which frees it for others) and the client's stream is out
// of step, so its connection closes. It counts in agimo_client_errors_total,
// never as an upstream error (issue 10).
func (p *Proxy) clientFailed(ctx *fasthttp.RequestCtx, r *route.Route, err error) {
	kind, status, msg := stats.ClientBadBody, fasthttp.StatusBadRequest, "malformed request body"
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		kind, status = stats.ClientBodyTimeout, fasthttp.StatusRequestTimeout
		msg = "no request body byte within " + r.BodyTimeout.String()
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, upstream.ErrTruncated), errors.Is(err, syscall.ECONNRESET), sawEOF(ctx.Conn()):
		kind, msg = stats.ClientAborted, "request body incomplete"
	}
	r.M.ClientErrs[kind].Inc()
	p.log.Debug().Str("host", r.Host).Str("kind", kind).Err(err).Msg("request body failed")
	setReason(ctx, "client_"+kind)
	ctx.SetConnectionClose()
	p.reply(ctx, status, msg)
}

// sawEOF reports whether client connection c has reported EOF.
func sawEOF(c net.Conn) bool {
	w, ok := c.(upstream.EOFWatcher)
	return ok && w.SawEOF()
}

var errUnsolicited101 = errors.New("101 Switching Protocols to a request without Upgrade")

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
		if !fields.IsFraming(k) && !fields.IsHopByHop(k, listed) && !bytes.EqualFold(k, hTrailer) {
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
	resp    *fasthttp.Response
	counted *route.Route // nil for requests not counted (probes)
	// conn is the upstream connection of a chunked response (clientconn.go).
	conn upstream.BodyConn
	// read counts the body's data bytes read; err is a read's error held
	// back for the next Read, the bytes read before it being returned first.
	read int
	err  error
	// trailer is the client's response header of a chunked response: its
	// trailer section, which fasthttp writes after the last chunk, gets
	// the upstream's once the body has been read (trailers.go).
	trailer *fasthttp.ResponseHeader
	// x is the request's record, its line written by Close.
	x *exchange
}

// Read returns, with the chunk the upstream sent next, every whole chunk
// already received after it, as far as p holds them: fasthttp's server
// writes each Read to the client with a write(2) of its own (its
// writeBodyChunked flushes every chunk), which was one per Server-Sent
// Event however many the upstream's socket had delivered at once. Only
// chunks received whole are read on (upstream.BodyConn.ChunkReceived), so
// no Read waits for the upstream once it has bytes to return: an event is
// never held back for the next.
func (b *upstreamBody) Read(p []byte) (int, error) {
	var n int
	err := b.err
	if err != nil {
		b.err = nil
	} else {
		n, err = b.resp.BodyStream().Read(p)
		for err == nil && n < len(p) && b.conn != nil && b.conn.ChunkReceived(b.read+n) {
			var m int
			m, err = b.resp.BodyStream().Read(p[n:])
			n += m
		}
		if err != nil && n > 0 {
			// fasthttp writes the bytes and reads on, ignoring the error.
			b.err, err = err, nil
		}
	}
	b.read += n
	b.x.bytesOut += int64(n)
	if err == io.EOF && b.conn != nil {
		// fasthttp's server then closes the client connection without
		// the last chunk, so the client too sees the response cut short.
		err = upstream.ChunkedEnd(err, b.conn)
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
	if b.counted != nil {
		b.counted.EndRequest()
	}
	b.x.emit()
	return err
}
