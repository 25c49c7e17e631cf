package proxy

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/agimo/agimo/tunnel"
)

// max_connections counts every open client connection, from accept until
// its socket is closed, however it is held meanwhile: served by fasthttp,
// parked in the lot, parked with a body, tunnelled, replayed (issue 10).
// fasthttp's own Concurrency cannot: a hijacked connection leaves its
// count, so parked clients and tunnels were not bounded at all, and a
// replay through ServeConn could be refused by it.
//
// Each accepted connection takes a slot, released once, by whoever closes
// its socket: the clientConn's Close while fasthttp owns it; the lot or
// the tunnel once they have taken the socket over (takeOver hands them
// the slot along with the socket, since they close the *net.TCPConn
// under the wrapper, not the wrapper).
type connLimit struct {
	max        int64
	open       atomic.Int64
	retryAfter int
	// rejecting bounds the goroutines answering connections past max, so
	// that a flood of them cannot pile up goroutines and descriptors in
	// the lingering close; past it a connection is closed unanswered.
	rejecting chan struct{}
	wg        sync.WaitGroup // rejecting goroutines
}

func newConnLimit(max, retryAfter int) *connLimit {
	return &connLimit{max: int64(max), retryAfter: retryAfter, rejecting: make(chan struct{}, 256)}
}

// connSlot is one connection's place under max_connections.
type connSlot struct {
	lim      *connLimit
	released atomic.Bool
}

// Release frees the slot; only the first call counts. A nil slot (a
// connection not accepted by a clientListener) is a no-op.
func (s *connSlot) Release() {
	if s != nil && s.released.CompareAndSwap(false, true) {
		s.lim.open.Add(-1)
	}
}

// acquire takes a slot, or returns nil past max.
func (l *connLimit) acquire() *connSlot {
	if l.open.Add(1) > l.max {
		l.open.Add(-1)
		return nil
	}
	return &connSlot{lim: l}
}

// reject answers a connection past max_connections with 503 and
// Retry-After, then closes it, on a goroutine of its own: the accept loop
// must not wait for a slow client.
func (l *connLimit) reject(c net.Conn) {
	select {
	case l.rejecting <- struct{}{}:
	default:
		c.Close()
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { <-l.rejecting }()
		defer c.Close()
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		// The client's request is never read: linger, so that its unread
		// bytes do not turn the close into a reset that destroys the 503.
		if _, err := io.WriteString(c, plainAnswer(fasthttp.StatusServiceUnavailable, l.retryAfter, "too many open connections")); err == nil {
			tunnel.Linger(c)
		}
	}()
}

// plainAnswer is one of Agimo's own responses on a connection it closes
// after: 503s with Retry-After (retryAfter > 0) written outside fasthttp.
func plainAnswer(status, retryAfter int, msg string) string {
	body := msg + "\n"
	ra := ""
	if retryAfter > 0 {
		ra = "Retry-After: " + strconv.Itoa(retryAfter) + "\r\n"
	}
	return "HTTP/1.1 " + strconv.Itoa(status) + " " + fasthttp.StatusMessage(status) + "\r\n" + ra +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nConnection: close\r\n\r\n" + body
}

// clientListener wraps each accepted connection in a clientConn holding
// its slot, and answers those past max_connections itself.
type clientListener struct {
	net.Listener
	lim *connLimit
}

func (l clientListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if s := l.lim.acquire(); s != nil {
			cc := newClientConn(c)
			cc.slot = s
			return cc, nil
		}
		l.lim.reject(c)
	}
}

// Hand-offs. A request counted before fasthttp calls the proxy back (a
// park in the lot, an upgrade: both wait for the Hijack callback) would
// keep its counts for good if the callback never ran: fasthttp skips it
// when flushing an earlier pipelined response or clearing the deadlines
// fails, and closes the connection instead. So the count's undo is left
// on the connection: takeOver, first thing in the callback, drops it;
// otherwise the connection's Close runs it.

// handOff leaves undo on ctx's client connection, to run if the
// connection closes before a Hijack callback takes it over.
func handOff(ctx *fasthttp.RequestCtx, undo func()) {
	if c, ok := ctx.Conn().(interface{ setUndo(func()) }); ok {
		c.setUndo(undo)
	}
}

// markLinger asks for a lingering close of ctx's client connection: the
// proxy answers without reading the whole request body.
func markLinger(ctx *fasthttp.RequestCtx) {
	if c, ok := ctx.Conn().(interface{ setLinger() }); ok {
		c.setLinger()
	}
}

// unreadInput reports whether bytes the client sent wait unread in c's
// socket: closing it now would send a reset (RFC 9112 §9.6).
func unreadInput(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}

// Slot takes a place under max_connections for a connection that another
// front end serves (HTTP/2, TLS passthrough): max_connections bounds every
// client connection, whatever its protocol. release frees it; ok is false
// past the limit, and the caller closes the connection.
func (p *Proxy) Slot() (release func(), ok bool) {
	s := p.conns.acquire()
	if s == nil {
		return nil, false
	}
	return s.Release, true
}
