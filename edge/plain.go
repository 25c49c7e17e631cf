package edge

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// preface is the HTTP/2 client connection preface (RFC 9113 §3.4): the
// first bytes of every h2c connection with prior knowledge. No HTTP/1.x
// request starts with it: its method PRI is reserved for it (RFC 9113
// §11.6).
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// classify tells what b, the first bytes of a connection, show: HTTP/2
// once they hold the whole preface, HTTP/1.x as soon as one byte differs
// from the preface's, nothing yet while they are a strict prefix of it.
// It compares progressively: an HTTP/1 request line may arrive in pieces,
// and a client may send fewer than 24 bytes before waiting for an answer
// (most differ at their first byte: only methods starting with P wait for
// a second one).
func classify(b []byte) (h2, decided bool) {
	n := min(len(b), len(preface))
	if string(b[:n]) != preface[:n] {
		return false, true
	}
	return n == len(preface), n == len(preface)
}

// errNoPeek means the connection's socket cannot be peeked at.
var errNoPeek = errors.New("edge: cannot peek at the socket")

// sortPlain sorts a plain-port connection, raw, on the goroutine the
// accept loop started for it.
func (e *Edge) sortPlain(raw net.Conn) {
	defer e.wg.Done()
	err := raw.SetReadDeadline(time.Now().Add(e.timeout))
	var c net.Conn
	var h2 bool
	if err == nil {
		c, h2, err = sniff(raw)
	}
	if err == nil {
		err = raw.SetReadDeadline(time.Time{})
	}
	if err != nil {
		r := reason(err)
		if e.isClosed() {
			r = reasonShutdown
		}
		e.m.unsorted(r)
		e.cfg.Log.Debug().Err(err).Str("reason", r).Stringer("remote", raw.RemoteAddr()).Msg("connection closed unsorted")
		e.drop(raw)
		return
	}
	if !h2 {
		e.deliver(raw, c)
		return
	}
	if e.cfg.H2 == nil {
		e.m.unsorted(reasonOther)
		e.drop(raw)
		return
	}
	e.serve(raw, protoH2C, func() { e.cfg.H2(c, false) })
}

// sniff waits, within c's read deadline, for c's first bytes to tell
// HTTP/2 from HTTP/1.x, and returns the connection to hand on.
//
// Over a socket it peeks (MSG_PEEK) without reading: the bytes stay in
// the kernel and the connection handed on is c itself, so the front end
// keeps what it relies on — SyscallConn for its peeks at pending input
// and its watch for resets, *net.TCPConn for splice(2) — with nothing
// replayed in front of the socket to hide bytes from them. Otherwise it
// reads at most the preface's 24 bytes and returns a ReplayConn that
// reads them back: never more than what was read.
func sniff(c net.Conn) (net.Conn, bool, error) {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			h2, err := peekPreface(rc)
			if !errors.Is(err, errNoPeek) {
				return c, h2, err
			}
		}
	}
	buf := make([]byte, len(preface))
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if h2, ok := classify(buf[:n]); ok {
			return NewReplayConn(c, buf[:n]), h2, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}
