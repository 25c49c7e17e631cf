package proxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/reqid"
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

// parkInLot hands ctx's connection to the core's lot (park.Lot), which
// watches it without a goroutine: detached from fasthttp (clientConn.detach)
// when it can be, else hijacked. The caller has counted the
// request as active; the lot's release, timeout or client-gone path ends
// that. It returns false if the route's max_parked is reached.
func (p *Proxy) parkInLot(ctx *fasthttp.RequestCtx, r *route.Route, deadline time.Time, x *exchange) bool {
	if !r.TryPark() {
		return false
	}
	p.core.Policy.Begin(r, x.tr)
	// The entry's owner carries the request's record to its release or
	// refusal; the line is theirs to write.
	e := &park.Entry{Route: r, Head: headWithID(&ctx.Request.Header, x), Start: time.Now(),
		Owner: lotOwner{p, x.clone()}}
	x.taken = true
	if c, ok := ctx.Conn().(*clientConn); ok {
		if raw, slot := c.detach(); raw != nil {
			// The common case (a connection's first request, nothing sent
			// after it): parked here, on fasthttp's goroutine, with no
			// early bytes to keep. fasthttp closes its side after.
			ctx.SetConnectionClose()
			e.Conn, e.Slot = raw, slot
			p.core.Lot.Add(e, deadline)
			return true
		}
	}
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

// lotOwner is the park.Owner of one parked request: the proxy, with the
// request's record (exchange.go).
type lotOwner struct {
	p *Proxy
	x *exchange
}

func (o lotOwner) Release(e *park.Entry) {
	end := time.Now()
	o.x.parkedFor(end.Sub(e.Start))
	o.x.tr.Park(e.Start, end, nil)
	o.p.release(e, o.x)
}

func (o lotOwner) Refuse(e *park.Entry, msg string) {
	end := time.Now()
	o.x.parkedFor(end.Sub(e.Start))
	o.x.status = fasthttp.StatusServiceUnavailable
	// The lot says why only in its message.
	why := park.ErrTimeout
	o.x.reason = reasonParkTimeout
	if msg == msgShuttingDown {
		o.x.reason, why = reasonShutdown, park.ErrStopping
	}
	o.x.tr.Park(e.Start, end, why)
	o.p.refuse(e, msg, o.x)
}

// Gone writes the line of a request whose client left while parked:
// nginx's 499, as for a client leaving a request parked on its goroutine.
func (o lotOwner) Gone(e *park.Entry) {
	o.x.parkedFor(time.Since(e.Start))
	o.x.status, o.x.reason = statusClientGone, reasonClientGone
	o.x.emit()
}

// msgShuttingDown is the lot's message to requests refused at shutdown.
const msgShuttingDown = "agimo is shutting down"

// Release hands a parked connection back to fasthttp with the request
// head in front (park.Owner), as if it had just arrived.
func (p *Proxy) Release(e *park.Entry) { p.release(e, nil) }

// release is Release for a request whose record is x (nil: none).
func (p *Proxy) release(e *park.Entry, x *exchange) {
	// The replayed head's line is whole; what follows is another.
	ec := newClientConn(e.Conn)
	ec.lineOpen = false
	if s, ok := e.Slot.(*connSlot); ok {
		ec.slot = s
	}
	if x == nil {
		x = &exchange{start: e.Start, parked: time.Since(e.Start), route: e.Route}
	}
	_ = p.srv.ServeConn(&replayConn{clientConn: ec, head: e.Head, route: e.Route, pending: true,
		retryAfter: e.Route.RetryAfter(p.opts.RetryAfter), rec: x})
}

// Refuse answers a parked request 503 (park.Owner); the lot closes the
// connection after.
func (p *Proxy) Refuse(e *park.Entry, msg string) { p.refuse(e, msg, nil) }

// Gone is a parked request's client leaving (park.Owner): without its
// record, there is no line to write.
func (p *Proxy) Gone(*park.Entry) {}

// refuse is Refuse for a request whose record is x (nil: none).
func (p *Proxy) refuse(e *park.Entry, msg string, x *exchange) {
	resp := plainAnswer(fasthttp.StatusServiceUnavailable, e.Route.RetryAfter(p.opts.RetryAfter), msg)
	if x != nil {
		resp = withHeaders(resp, reqid.Header+": "+string(x.id)+"\r\n"+x.coldStartLine())
		x.bytesOut = int64(len(msg) + 1)
		defer x.emit()
	}
	_ = e.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(e.Conn, resp); err == nil {
		// Bytes the client sent after its head may be unread.
		tunnel.Linger(e.Conn)
	}
}

// withHeaders inserts header lines after the status line of answer.
func withHeaders(answer, lines string) string {
	i := strings.Index(answer, "\r\n") + 2
	return answer[:i] + lines + answer[i:]
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
	// rec is the replayed request's record, from its arrival.
	rec *exchange
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
			msg := "request not served; retry"
			if c.rec == nil {
				c.rec = &exchange{}
			}
			answer := plainAnswer(fasthttp.StatusServiceUnavailable, c.retryAfter, msg)
			answer = withHeaders(answer, reqid.Header+": "+string(c.rec.id)+"\r\n"+c.rec.coldStartLine())
			if _, err := io.WriteString(c.clientConn.Conn, answer); err == nil {
				c.linger = true
			}
			c.rec.status, c.rec.reason, c.rec.bytesOut = fasthttp.StatusServiceUnavailable, reasonNotServed, int64(len(msg)+1)
			c.rec.emit()
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
