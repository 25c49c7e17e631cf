package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/tunnel"
	"github.com/agimo/agimo/upstream"
)

// A chunked body ends with its last-chunk (RFC 9112 §7.1), never with
// the connection: a peer that closes at a chunk boundary has sent an
// incomplete message (RFC 9112 §8). fasthttp's chunk reader cannot tell
// the two apart — an EOF where a chunk-size line should start reads as
// the end of the body — so the proxy watches the sockets instead: a
// complete chunked body is parsed without reading past its end, so if
// the socket under it reported EOF, the body was cut short. Forwarding
// such a body as complete would hand the upstream (or the client) a
// different message from the one that was sent (issue 6).

// clientConn is a client connection as the proxy's server sees it. fasthttp
// hides what its parser saw, so this layer watches the bytes for what the
// proxy must tell apart:
//   - whether a read reported EOF (for chunked bodies, above);
//   - whether the request line being read has ended: when a head overflows
//     the read buffer fasthttp says only that, and RFC 9110 §15.5.15 wants
//     414 for a request line too long, 431 for the rest;
//   - a first head whose lines end in bare LF: fasthttp waits for a CRLF
//     CRLF that never comes, and the client would wait for the header
//     timeout. RFC 9112 §2.2 lets a recipient reject bare LF; it is
//     answered 400 at once.
type clientConn struct {
	net.Conn
	eof atomic.Bool
	// The fields below belong to the connection's fasthttp goroutine, the
	// only one that reads and writes it.

	// lineOpen is true from a write (the end of a response: what comes
	// next is a head) until a read brings a line feed. A pipelined head
	// read earlier makes it wrong, which only turns a 414 into a 431.
	lineOpen bool
	// first is true while the connection's first head is read, the only
	// one whose bytes are known to start at the first read: later heads
	// may sit in fasthttp's buffer since an earlier read. lineLen counts
	// the bytes of its current line, lines its complete non-empty lines.
	first    bool
	lineLen  int
	lines    int
	prevBare bool // the last complete line ended in a bare LF
	prev     byte // the last byte of the previous read
	// headEnd is set once the first head's blank line has been read;
	// past counts the bytes read after it (fasthttp holds them in its
	// buffer, out of a detach's reach).
	headEnd bool
	past    int
	// detached is set once detach has given the socket to a new owner:
	// fasthttp's goroutine still ends its turn on this connection, but
	// reads, writes, deadlines and the close no longer reach the socket.
	detached bool
	wrote    bool // a byte of a response was written
	// tls is set for a connection that arrived over TLS (the TLS port):
	// its requests go upstream with X-Forwarded-Proto: https.
	tls bool

	// slot is the connection's place under max_connections (connlimit.go),
	// released by Close unless takeOver handed it to a new owner.
	slot *connSlot
	// undo, if set, undoes the counts of a hand-off whose Hijack callback
	// has not run yet; Close runs it, takeOver drops it.
	undo func()
	// linger asks Close for a lingering close: the request body was not
	// read (RFC 9112 §9.6; nginx's lingering_close).
	linger bool

	// sendTimeout bounds the wait of each write (nginx's send_timeout:
	// between two successful writes, not for the whole response), for the
	// response to a request of route sent (nil if none matched); the
	// handler sets them for each request (setSend). wd is the deadline
	// last set (upstream.IdleDeadline, as idleConn's). sendErr fails every
	// write after one timed out: part of its bytes may have gone, so the
	// response cannot go on (fasthttp then closes the connection and the
	// response body, which frees the upstream's).
	sendTimeout time.Duration
	sent        *route.Route
	log         *zerolog.Logger
	wd          upstream.IdleDeadline
	sendErr     error

	// x is the record of the request being served (exchange.go).
	x exchange
}

// errBareLF fails the read that brings a blank line ended by a bare LF.
var errBareLF = errors.New("request head has a line ending in a bare LF")

func newClientConn(c net.Conn) *clientConn {
	_, tls := c.(interface{ ConnectionState() tls.ConnectionState })
	return &clientConn{Conn: c, lineOpen: true, first: true, tls: tls}
}

// overTLS reports whether client connection c arrived over TLS.
func overTLS(c net.Conn) bool {
	switch c := c.(type) {
	case *clientConn:
		return c.tls
	case *replayConn:
		return c.tls
	}
	return false
}

func (c *clientConn) Read(b []byte) (int, error) {
	if c.detached {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(b)
	if c.headEnd {
		c.past += n
	}
	if c.lineOpen && bytes.IndexByte(b[:n], '\n') >= 0 {
		c.lineOpen = false
	}
	if c.first && n > 0 && c.scanFirstHead(b[:n]) {
		// With the bytes, so fasthttp's reader stops and its error
		// handler answers 400.
		return n, errBareLF
	}
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

// scanFirstHead follows the lines of the first head in b and reports a
// head fasthttp would wait on for ever: one that ends in a blank line
// without CRLF CRLF before it (a bare-LF blank line, or a CRLF one after
// a line ended by a bare LF). It stops at the head's end.
func (c *clientConn) scanFirstHead(b []byte) (hang bool) {
	last := b[len(b)-1]
	defer func() { c.prev = last }()
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			c.lineLen += len(b)
			return false
		}
		cr := i > 0 && b[i-1] == '\r' || i == 0 && c.lineLen > 0 && c.prev == '\r'
		c.lineLen += i
		content := c.lineLen
		if cr {
			content--
		}
		switch {
		case content > 0:
			c.lines++
			c.prevBare = !cr
		case c.lines == 0:
			// Empty lines before the request line are ignored (RFC 9112
			// §2.2), as fasthttp does.
		default: // the blank line that ends the head
			c.first = false
			c.headEnd, c.past = true, len(b)-i-1
			return !cr || c.prevBare
		}
		c.lineLen = 0
		b = b[i+1:]
	}
	return false
}

func (c *clientConn) Write(b []byte) (int, error) {
	if c.detached {
		return len(b), nil // fasthttp's answer to a request now parked
	}
	c.lineOpen = true
	c.wrote = true
	c.first = false // a response ends the first head, whatever it was
	if c.sendErr != nil {
		return 0, c.sendErr
	}
	if c.sendTimeout > 0 {
		if c.wd.Due(c.sendTimeout) {
			if err := c.Conn.SetWriteDeadline(c.wd.At()); err != nil {
				return 0, err
			}
		}
	}
	n, err := c.Conn.Write(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.sendErr = err
		if c.sent != nil {
			// The client's failure, not the upstream's (issue 10).
			c.sent.M.ClientErrs[stats.ClientSendTimeout].Inc()
			c.log.Debug().Str("host", c.sent.Host).Str("remote", c.RemoteAddr().String()).
				Dur("send_timeout", c.sendTimeout).Msg("client stopped reading the response")
		}
	}
	return n, err
}

// setSend bounds the writes of the response to the request being served
// by timeout, and blames a timeout on route r (nil if none matched).
func (c *clientConn) setSend(timeout time.Duration, r *route.Route, log *zerolog.Logger) {
	if timeout != c.sendTimeout {
		c.sendTimeout, c.wd = timeout, upstream.IdleDeadline{} // armed anew at the next write
	}
	c.sent, c.log = r, log
}

func (c *clientConn) SawEOF() bool          { return c.eof.Load() }
func (c *clientConn) requestLineOpen() bool { return c.lineOpen }

// UnsafeConn lets takeOver reach the socket under this layer.
func (c *clientConn) UnsafeConn() net.Conn { return c.Conn }

// SyscallConn exposes the socket for park.WatchClose: under TLS, the TCP
// socket below the *tls.Conn (its NetConn), whose resets and hang-ups are
// the client's. Only for watching: bytes read from it would be records.
func (c *clientConn) SyscallConn() (syscall.RawConn, error) {
	for inner := c.Conn; ; {
		if sc, ok := inner.(syscall.Conn); ok {
			return sc.SyscallConn()
		}
		u, ok := inner.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, errNoSyscallConn
		}
		inner = u.NetConn()
	}
}

// Close closes the socket, lingering first if the client may still be
// sending: with unread bytes, the close would send a reset that can
// destroy the response before the client has read it. Then it runs a
// pending hand-off's undo and frees the connection's slot.
func (c *clientConn) Close() error {
	if c.detached {
		return nil
	}
	if c.linger || unreadInput(c.Conn) {
		tunnel.LingerUpload(c.Conn)
	}
	err := c.Conn.Close()
	if c.undo != nil {
		c.undo()
		c.undo = nil
	}
	c.slot.Release()
	return err
}

func (c *clientConn) setUndo(f func()) { c.undo = f }
func (c *clientConn) setLinger()       { c.linger = true }

// detach gives the socket and the slot of a connection whose first
// request is being served, and of which nothing past that request's head
// has been read, to a new owner, without fasthttp's Hijack. fasthttp
// then ends the connection (the caller sets Connection: close): its
// answer goes nowhere, its close leaves the socket open, and its read
// buffer returns to its pool, where a hijack would leave that buffer
// (max_header_size) to the collector and start a goroutine for the
// callback. It returns nil if the connection cannot be detached: the
// caller hijacks it instead.
func (c *clientConn) detach() (net.Conn, *connSlot) {
	if !c.headEnd || c.past != 0 || c.wrote || c.undo != nil {
		return nil, nil
	}
	// fasthttp's header timeout is armed on the socket.
	if c.Conn.SetDeadline(time.Time{}) != nil {
		return nil, nil
	}
	c.detached = true
	s := c.slot
	c.slot = nil
	return c.Conn, s
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if c.detached {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	if c.detached {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *clientConn) SetWriteDeadline(t time.Time) error {
	if c.detached {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// handOver is takeOver's: the Hijack callback runs, so a hand-off's undo
// is not needed, and the slot goes to the connection's new owner.
func (c *clientConn) handOver() *connSlot {
	s := c.slot
	c.slot, c.undo = nil, nil
	return s
}

// requestLineOpen reports whether the request line being read on client
// connection c has not ended yet.
func requestLineOpen(c net.Conn) bool {
	l, ok := c.(interface{ requestLineOpen() bool })
	return ok && l.requestLineOpen()
}
