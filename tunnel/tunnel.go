// Package tunnel relays bytes both ways between a client connection and an
// upstream connection once an HTTP upgrade has succeeded (issue 3: the
// WebSocket tunnels that are the reason Agimo exists).
//
// A Tunnel is opened in a Registry as soon as the HTTP server hands the
// client connection over, so that shutdown can find and close it even
// during the upgrade handshake. Relay then copies each direction with
// io.Copy between the raw connections, which on Linux moves *net.TCPConn
// to *net.TCPConn with splice(2), never through user space. A half-close
// (EOF from one side) is passed on as CloseWrite to the other; any other
// failure closes both. Relay returns only when both directions have
// stopped: no goroutine outlives its tunnel.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrClosed means the registry was closed (shutdown) before or while
	// the tunnel was open.
	ErrClosed = errors.New("tunnel closed at shutdown")
	// ErrIdle means no byte moved either way for Options.IdleTimeout.
	ErrIdle = errors.New("tunnel idle")
)

// chunk bounds one io.Copy call, so that byte counters are told about a
// long transfer at least every chunk, not only when the tunnel ends. A
// LimitedReader around a *net.TCPConn keeps the splice path.
const chunk = 1 << 20

// Options configure a relay.
type Options struct {
	// IdleTimeout, if positive, closes the tunnel once no byte has moved
	// in either direction for that long; it is noticed between one and
	// two timeouts after the last byte. TCP keepalive probes do not count
	// as bytes; WebSocket pings do. Only reads have deadlines: one firing
	// during a splice's write would lose the bytes in its pipe. A peer
	// that stops reading stalls its direction; once nothing moves either
	// way, the tunnel is idle.
	IdleTimeout time.Duration
	// Up and Down, if set, are told the bytes relayed client to upstream
	// and upstream to client, at the latest every MiB and at the end.
	Up, Down func(n int64)
}

// Tunnel is one client connection taken over for an upgrade, from the
// handshake to its end. Create it with Registry.Open.
type Tunnel struct {
	reg    *Registry
	client net.Conn
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex // guards upstream, closed and err
	upstream net.Conn
	closed   bool
	err      error // why the tunnel was closed; nil for a clean end
}

func newTunnel(r *Registry, client net.Conn) *Tunnel {
	ctx, cancel := context.WithCancel(context.Background())
	return &Tunnel{reg: r, client: client, ctx: ctx, cancel: cancel}
}

// Context is done when the tunnel is closed: dial the upstream with it,
// so that shutdown interrupts a dial in progress.
func (t *Tunnel) Context() context.Context { return t.ctx }

// SetUpstream attaches the upstream connection. If the tunnel was closed
// meanwhile, it closes c and returns why.
func (t *Tunnel) SetUpstream(c net.Conn) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return t.err
	}
	t.upstream = c
	return nil
}

// Close closes both connections with ErrClosed. It is safe to call from
// any goroutine, any number of times.
func (t *Tunnel) Close() { t.close(ErrClosed) }

// close closes both connections, recording why if it is the first call.
// Closing unblocks whatever reads or writes them.
func (t *Tunnel) close(why error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed, t.err = true, why
	t.cancel()
	t.client.Close()
	if t.upstream != nil {
		t.upstream.Close()
	}
}

// End closes the tunnel if it is not yet closed and removes it from its
// registry. Call it exactly once, when done with the tunnel.
func (t *Tunnel) End() {
	t.close(nil)
	t.reg.remove(t)
}

// Relay copies clientPrefix then the client's bytes to the upstream, and
// upstreamPrefix then the upstream's bytes to the client, until both
// directions have ended. The prefixes are bytes already read from each
// side and buffered (RFC 6455 §4.1: a client may send its first frame
// right behind its handshake, and a server right behind its 101); they
// must reach the other side first, before anything spliced.
//
// It closes both connections before it returns, and returns why the
// tunnel ended: nil when both sides closed in turn, ErrIdle, ErrClosed, or
// the I/O error that ended it.
func (t *Tunnel) Relay(clientPrefix, upstreamPrefix []byte, o Options) error {
	ch := make(chan error, 1)
	t.begin(clientPrefix, upstreamPrefix, o, func(err error) { ch <- err }, false)
	return <-ch
}

// Start relays as Relay does, each direction on a goroutine of its own,
// and returns at once. done gets Relay's result: it runs on the last of
// the two goroutines to end, both connections closed, and that goroutine
// ends when done returns, so the caller owns both through done (with
// Registry.Wait: call End last in done). A tunnel closed or without
// upstream gets done on the caller's goroutine, before Start returns.
//
// No goroutine waits for the two: an idle tunnel costs two stacks, not
// three. And neither runs below the caller's deep frames: an idle
// goroutine keeps the largest stack it ever needed (the runtime halves a
// stack only when under a quarter of it is in use), so the stacks that
// wait start at the size new goroutines get (the runtime's average in
// use at the last GC) and stay small.
func (t *Tunnel) Start(clientPrefix, upstreamPrefix []byte, o Options, done func(error)) {
	t.begin(clientPrefix, upstreamPrefix, o, done, true)
}

// begin starts the relay, the direction upstream to client on the
// caller's goroutine unless detached (Relay's caller waits anyway: a
// third goroutine would only add a stack).
func (t *Tunnel) begin(clientPrefix, upstreamPrefix []byte, o Options, done func(error), detached bool) {
	t.mu.Lock()
	up, closed := t.upstream, t.closed
	t.mu.Unlock()
	if closed {
		done(t.reason())
		return
	}
	if up == nil {
		done(errors.New("relay without upstream"))
		return
	}
	r := &pair{t: t, done: done}
	r.left.Store(2)
	idle := newIdleWatch(o.IdleTimeout, t.client, up)
	go r.run(up, t.client, clientPrefix, o.Up, idle, "up")
	if detached {
		go r.run(t.client, up, upstreamPrefix, o.Down, idle, "down")
	} else {
		r.run(t.client, up, upstreamPrefix, o.Down, idle, "down")
	}
}

// pair is what a tunnel's two directions share.
type pair struct {
	t    *Tunnel
	done func(error)
	left atomic.Int32 // directions still running
}

// run relays one direction; the last one to end closes the tunnel and
// calls done.
func (r *pair) run(dst, src net.Conn, prefix []byte, count func(int64), idle *idleWatch, dir string) {
	r.t.pipe(dst, src, prefix, count, idle, dir)
	if r.left.Add(-1) == 0 {
		r.t.close(nil)
		r.done(r.t.reason())
	}
}

func (t *Tunnel) reason() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// pipe relays one direction: prefix, then src until EOF, which it passes
// on as a half-close of dst. On any other error it closes the tunnel, so
// that the other direction stops too.
func (t *Tunnel) pipe(dst, src net.Conn, prefix []byte, count func(int64), idle *idleWatch, dir string) {
	if count == nil {
		count = func(int64) {}
	}
	if len(prefix) > 0 {
		n, err := dst.Write(prefix)
		count(int64(n))
		if err != nil {
			t.close(fmt.Errorf("%s: write buffered bytes: %w", dir, err))
			return
		}
	}
	rd := newReader(src, idle)
	// Splice pays off only for bulk: on small frames (a WebSocket chat,
	// 64-byte echoes) a plain read and write beat it by 1.2-1.6x in round
	// trips, and a splice waiting for data holds two pipes (four
	// descriptors) for the whole idle life of a tunnel. So each direction
	// reads into a pooled buffer, and only a read that fills it (bytes
	// arriving faster than they are relayed) hands the next chunk to
	// splice(2), when both ends are plain TCP sockets.
	_, srcTCP := src.(*net.TCPConn)
	_, dstTCP := dst.(*net.TCPConn)
	canSplice := srcTCP && dstTCP
	last := idle.activity()
	// A LimitedReader over the raw *net.TCPConn: io.Copy hands it to
	// TCPConn.ReadFrom, which splices it.
	lr := io.LimitedReader{R: src}
	for {
		if idle != nil {
			if err := src.SetReadDeadline(time.Now().Add(idle.timeout)); err != nil {
				t.close(fmt.Errorf("%s: set deadline: %w", dir, err))
				return
			}
		}
		n, full, err := rd.relay(dst)
		count(n)
		if err == nil && full && canSplice {
			lr.N = chunk
			n, err = io.Copy(dst, &lr)
			count(n)
			if err == nil && lr.N > 0 {
				err = io.EOF
			}
		}
		switch {
		case err == nil:
			// Carry on.
		case errors.Is(err, io.EOF):
			// The source closed its write side. Pass the half-close on;
			// the other direction may still carry data.
			if err := closeWrite(dst); err != nil {
				t.close(fmt.Errorf("%s: close write: %w", dir, err))
			}
			return
		case idle != nil && errors.Is(err, os.ErrDeadlineExceeded):
			now := idle.activity()
			if now == last {
				t.close(ErrIdle)
				return
			}
			last = now
		default:
			t.close(fmt.Errorf("%s: %w", dir, err))
			return
		}
	}
}

// closeWrite half-closes c (TCP FIN) if it can; a connection that cannot
// is closed instead, the nearest thing.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// idleWatch tells whether bytes moved on a tunnel. It asks the kernel
// (TCP_INFO byte counters of both sockets) rather than counting in the
// copy loop, because splice moves bytes without the loop seeing them
// until a chunk ends; connections the kernel cannot tell about are
// counted by a wrapper around their reads (which rules out splice for
// them, but they could not be spliced anyway).
type idleWatch struct {
	timeout time.Duration
	conns   [2]net.Conn
	kernel  [2]bool       // whether conns[i] has TCP_INFO counters
	counted atomic.Uint64 // bytes read from connections without them
}

func newIdleWatch(timeout time.Duration, client, upstream net.Conn) *idleWatch {
	if timeout <= 0 {
		return nil
	}
	w := &idleWatch{timeout: timeout, conns: [2]net.Conn{client, upstream}}
	for i, c := range w.conns {
		_, w.kernel[i] = tcpBytes(c)
	}
	return w
}

// reader returns what to read src through: src itself if the kernel
// counts its bytes, else a counting wrapper.
func (w *idleWatch) reader(src net.Conn) io.Reader {
	for i, c := range w.conns {
		if c == src && w.kernel[i] {
			return src
		}
	}
	return countingReader{src, &w.counted}
}

// activity returns a number that changes whenever a byte moves either way.
func (w *idleWatch) activity() uint64 {
	if w == nil {
		return 0
	}
	sum := w.counted.Load()
	for i, c := range w.conns {
		if w.kernel[i] {
			n, _ := tcpBytes(c)
			sum += n
		}
	}
	return sum
}

type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(uint64(n))
	return n, err
}
