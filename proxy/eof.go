package proxy

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
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

// errTruncated replaces the clean end fasthttp reports for a chunked body
// cut off by its sender.
var errTruncated = errors.New("chunked body ended without its last chunk")

// eofConn records whether a read from the connection reported EOF.
type eofConn struct {
	net.Conn
	eof atomic.Bool
}

func (c *eofConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

func (c *eofConn) sawEOF() bool { return c.eof.Load() }

// UnsafeConn lets takeOver reach the socket under this layer.
func (c *eofConn) UnsafeConn() net.Conn { return c.Conn }

// SyscallConn exposes the socket for watchClose.
func (c *eofConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNoSyscallConn
	}
	return sc.SyscallConn()
}

// eofListener wraps each accepted connection in an eofConn.
type eofListener struct{ net.Listener }

func (l eofListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &eofConn{Conn: c}, nil
}

// sawEOF reports whether the client connection c has reported EOF.
func sawEOF(c net.Conn) bool {
	e, ok := c.(interface{ sawEOF() bool })
	return ok && e.sawEOF()
}

// chunkedEnd checks a chunked body's clean end: it turns io.EOF into
// errTruncated if conn reported EOF first.
func chunkedEnd(err error, conn interface{ sawEOF() bool }) error {
	if err == io.EOF && conn != nil && conn.sawEOF() {
		return errTruncated
	}
	return err
}

// upstreamAddr is the local address of an upstream connection, carrying
// the connection itself: fasthttp stores a connection's LocalAddr in each
// Response read from it, which is how upstreamBody finds the socket under
// a streamed response.
type upstreamAddr struct {
	net.Addr
	c *idleConn
}

func (a *upstreamAddr) sawEOF() bool { return a.c.eof.Load() }
