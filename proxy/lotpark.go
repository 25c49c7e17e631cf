package proxy

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/tunnel"
)

// canPark reports whether a request can wait in the lot: it has no body
// (so nothing of it sits in fasthttp's buffers but its head) and fasthttp
// kept its raw head to replay.
func canPark(ctx *fasthttp.RequestCtx) bool {
	_, hasBody := requestBody(ctx)
	return !hasBody && len(ctx.Request.Header.RawHeaders()) > 0
}

// parkInLot hijacks ctx's connection into the core's lot (park.Lot),
// which watches it without a goroutine. The caller has counted the
// request as active; the lot's release, timeout or client-gone path ends
// that. It returns false if the route's max_parked is reached.
func (p *Proxy) parkInLot(ctx *fasthttp.RequestCtx, r *route.Route, deadline time.Time) bool {
	if !r.TryPark() {
		return false
	}
	p.core.Policy.Begin(r)
	h := &ctx.Request.Header
	head := make([]byte, 0, len(h.Method())+len(h.RequestURI())+len(h.Protocol())+4+len(h.RawHeaders()))
	head = append(append(append(head, h.Method()...), ' '), h.RequestURI()...)
	head = append(append(append(head, ' '), h.Protocol()...), "\r\n"...)
	head = append(head, h.RawHeaders()...)
	e := &park.Entry{Route: r, Head: head, Start: time.Now(), Owner: p}
	ctx.HijackSetNoResponse(true)
	handOff(ctx, func() { r.Unpark(); r.EndRequest() })
	ctx.Hijack(func(c net.Conn) {
		// Keep the socket, not fasthttp's hijacked conn, which holds the
		// connection's whole read buffer (max_header_size) for the few
		// bytes, if any, the client sent after its head: those go after
		// the head.
		raw, early, slot := takeOver(c)
		// A request parked again after a replay sits on a replayConn whose
		// head is consumed by now, like every buffer above the socket.
		for {
			u, ok := raw.(interface{ UnsafeConn() net.Conn })
			if !ok {
				break
			}
			raw = u.UnsafeConn()
		}
		e.Conn, e.Head, e.Slot = raw, append(e.Head, early...), slot
		p.core.Lot.Add(e, deadline)
	})
	return true
}

// Release hands a parked connection back to fasthttp with the request
// head in front (park.Owner), as if it had just arrived.
func (p *Proxy) Release(e *park.Entry) {
	// The replayed head's line is whole; what follows is another.
	ec := newClientConn(e.Conn)
	ec.lineOpen = false
	if s, ok := e.Slot.(*connSlot); ok {
		ec.slot = s
	}
	_ = p.srv.ServeConn(&replayConn{clientConn: ec, head: e.Head, route: e.Route, pending: true,
		retryAfter: e.Route.RetryAfter(p.opts.RetryAfter)})
}

// Refuse answers a parked request 503 (park.Owner); the lot closes the
// connection after.
func (p *Proxy) Refuse(e *park.Entry, msg string) {
	resp := plainAnswer(fasthttp.StatusServiceUnavailable, e.Route.RetryAfter(p.opts.RetryAfter), msg)
	_ = e.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(e.Conn, resp); err == nil {
		// Bytes the client sent after its head may be unread.
		tunnel.Linger(e.Conn)
	}
}

// replayConn is a hijacked connection given back to fasthttp: it reads the
// parked request's head first, then whatever the client sent after it.
// The clientConn under it answers for the rest, as for any connection:
// EOF and request-line tracking, and the socket for watchClose and for
// the tunnel's splice (UnsafeConn, once fasthttp has read the head).
type replayConn struct {
	*clientConn
	head  []byte
	route *route.Route
	// pending is true until the replayed request reaches the handler,
	// which then neither routes nor counts it again: it was counted when
	// it parked. Only fasthttp's goroutine for this connection touches it.
	pending bool
	// retryAfter is the Retry-After of a 503 to a request never handled.
	retryAfter int
}

// Close ends the replayed request's count if fasthttp closes the
// connection without handing the request to the handler (it counted
// when it parked, and only the handler ends that), and tells the client
// to retry unless fasthttp has answered it.
func (c *replayConn) Close() error {
	if c.pending {
		c.pending = false
		c.route.EndRequest()
		if !c.wrote {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c.clientConn.Conn, plainAnswer(fasthttp.StatusServiceUnavailable, c.retryAfter, "request not served; retry")); err == nil {
				c.linger = true
			}
		}
	}
	return c.clientConn.Close()
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.clientConn.Read(b)
}

var errNoSyscallConn = errors.New("connection has no file descriptor")
