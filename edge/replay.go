package edge

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// ErrReplayPending is SyscallConn's error while a ReplayConn still holds
// bytes to replay: they are no longer in the socket, so whatever looks at
// the socket itself (a peek for pending input, a splice) would miss them.
var ErrReplayPending = errors.New("edge: replayed bytes not yet read")

// errNoSyscallConn is SyscallConn's error over a connection without one.
var errNoSyscallConn = errors.New("edge: connection has no file descriptor")

// ReplayConn is a connection some of whose first bytes the edge has read
// to sort it: reads return those bytes first, then the connection's own.
// Nothing else is buffered: only the bytes the edge read are replayed.
//
// Over a socket, the edge hands one on the TLS port only: under the
// *tls.Conn of a terminated connection (the handshake reads the
// ClientHello back, so none is left once H1 or H2 gets the *tls.Conn) and
// to ServePassthrough, the ClientHello still pending. The plain port peeks
// at the socket instead of reading it (sortPlain) and hands the
// connection itself, except over a connection without a file descriptor.
//
// While bytes are pending, SyscallConn fails with ErrReplayPending (the
// socket alone would not show them); after, it is the socket's. To splice
// a connection with pending bytes, take them and the socket with Detach.
type ReplayConn struct {
	net.Conn
	mu      sync.Mutex
	head    []byte      // the bytes not yet replayed; guarded by mu
	drained atomic.Bool // head is empty: reads go straight to Conn
	// watch, if set, sees the reads and writes of a TLS handshake
	// (alertWatch); set and cleared by the sorting goroutine around the
	// handshake.
	watch *alertWatch
}

// NewReplayConn returns c with head read back before c's own bytes.
func NewReplayConn(c net.Conn, head []byte) *ReplayConn {
	r := &ReplayConn{Conn: c, head: head}
	r.drained.Store(len(head) == 0)
	return r
}

// Read returns pending bytes, if any, alone (without waiting on the
// socket), then reads the connection.
func (c *ReplayConn) Read(b []byte) (int, error) {
	if !c.drained.Load() {
		c.mu.Lock()
		if len(c.head) > 0 {
			n := copy(b, c.head)
			c.head = c.head[n:]
			if len(c.head) == 0 {
				c.head = nil
				c.drained.Store(true)
			}
			c.mu.Unlock()
			if c.watch != nil {
				c.watch.sawRead(b[:n])
			}
			return n, nil
		}
		c.mu.Unlock()
	}
	n, err := c.Conn.Read(b)
	if c.watch != nil {
		c.watch.sawRead(b[:n])
	}
	return n, err
}

func (c *ReplayConn) Write(b []byte) (int, error) {
	if c.watch != nil {
		c.watch.sawWrite(b)
	}
	return c.Conn.Write(b)
}

// Buffered returns the number of bytes still to be replayed.
func (c *ReplayConn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.head)
}

// Detach returns the bytes not yet replayed and the connection under c,
// for a caller that relays them itself (a splice of the socket after
// writing head). c must not be read afterwards.
func (c *ReplayConn) Detach() (head []byte, conn net.Conn) {
	c.mu.Lock()
	head, c.head = c.head, nil
	c.drained.Store(true)
	c.mu.Unlock()
	return head, c.Conn
}

// CloseWrite half-closes the connection under c, if it can (a relay
// passes a half-close on; RFC 9293 §3.6).
func (c *ReplayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// NetConn returns the connection under c, like tls.Conn's. Bytes still
// pending in c are not in it (see Buffered).
func (c *ReplayConn) NetConn() net.Conn { return c.Conn }

// SyscallConn returns the socket's raw connection once every replayed
// byte has been read, and ErrReplayPending before (see ReplayConn).
func (c *ReplayConn) SyscallConn() (syscall.RawConn, error) {
	if !c.drained.Load() {
		return nil, ErrReplayPending
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNoSyscallConn
	}
	return sc.SyscallConn()
}
