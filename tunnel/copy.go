package tunnel

import (
	"io"
	"net"
	"sync"
	"syscall"
)

// bufSize is the read/write path's buffer: a TLS record's worth, far more
// than a WebSocket message of a chat or a game, and a read that fills it
// is the sign of bulk that switches a chunk to splice.
const bufSize = 16 << 10

var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// reader reads one direction of a tunnel in the read/write path.
type reader struct {
	src net.Conn
	// r is what to read when the socket cannot be read raw: src, or a
	// counting wrapper for the idle watch.
	r io.Reader
	// raw reads the socket itself: a buffer is taken from the pool only
	// once bytes are there and given back before the goroutine waits, so
	// an idle tunnel holds no buffer at all (a tunnel is mostly idle).
	raw syscall.RawConn
	// try is tryRead bound once, so that a read allocates no closure;
	// bp, n and err are its results.
	try func(fd uintptr) bool
	bp  *[]byte
	n   int
	err error
}

func newReader(src net.Conn, idle *idleWatch) *reader {
	rd := &reader{src: src, r: src}
	if idle != nil {
		rd.r = idle.reader(src)
	}
	// Only a plain *net.TCPConn: its bytes are the stream's (under TLS
	// they would be records), and the idle watch counts them through the
	// kernel, so reading around rd.r loses no count.
	if tc, ok := src.(*net.TCPConn); ok && rd.r == io.Reader(src) {
		if rc, err := tc.SyscallConn(); err == nil {
			rd.raw, rd.try = rc, rd.tryRead
		}
	}
	return rd
}

// relay moves what one read returns to dst. full reports that the read
// filled the buffer: more is likely waiting. An end of stream is io.EOF.
func (rd *reader) relay(dst net.Conn) (n int64, full bool, err error) {
	var bp *[]byte
	var m int
	if rd.raw != nil {
		m, bp, err = rd.readRaw()
	} else {
		bp = bufs.Get().(*[]byte)
		m, err = rd.r.Read(*bp)
	}
	if m > 0 {
		w, werr := dst.Write((*bp)[:m])
		n, full = int64(w), m == bufSize
		if werr != nil {
			err = werr
		}
	}
	if bp != nil {
		bufs.Put(bp)
	}
	return n, full, err
}

// readRaw reads the socket through its RawConn, which waits in the
// runtime's poller (with the read deadline) while there is nothing to
// read. The buffer is taken only when a read is about to happen and
// returned if it would block. Hand-written because net.Conn.Read needs
// its buffer before it knows whether it will wait.
func (rd *reader) readRaw() (int, *[]byte, error) {
	rd.bp, rd.n, rd.err = nil, 0, nil
	err := rd.raw.Read(rd.try)
	bp, n, serr := rd.bp, rd.n, rd.err
	rd.bp = nil
	switch {
	case err != nil:
		// The poller's error: deadline, or closed by the other direction.
		return 0, bp, err
	case serr != nil:
		return 0, bp, &net.OpError{Op: "read", Net: "tcp", Err: serr}
	case n == 0:
		return 0, bp, io.EOF
	}
	return n, bp, nil
}

// tryRead is readRaw's attempt, called by the poller: false means "would
// block, wait for the socket to be readable and call again".
func (rd *reader) tryRead(fd uintptr) bool {
	if rd.bp == nil {
		rd.bp = bufs.Get().(*[]byte)
	}
	for {
		rd.n, rd.err = syscall.Read(int(fd), *rd.bp)
		if rd.err != syscall.EINTR {
			break
		}
	}
	if rd.err == syscall.EAGAIN {
		bufs.Put(rd.bp)
		rd.bp, rd.n, rd.err = nil, 0, nil
		return false
	}
	if rd.n < 0 {
		rd.n = 0
	}
	return true
}
