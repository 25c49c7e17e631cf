// Package upstream is Agimo's side towards the apps: one pool of
// keep-alive connections per endpoint (fasthttp's HostClient), dialled to
// ready pod IPs, with an idle timeout on every read and write
// (upstream_timeout), a check that a reused connection is still open, the
// retry policy, and the classification of failures into the kinds of
// agimo_upstream_errors_total.
package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/stats"
	"golang.org/x/sys/unix"
)

const (
	// poolIdle closes upstream keep-alive connections idle this long.
	// fasthttp's cleaner runs at this period, so a connection may idle up
	// to twice as long: 2s keeps that under Node's 5s keepAliveTimeout,
	// the shortest common upstream idle timeout, to avoid sending a request
	// on a connection the upstream is closing.
	poolIdle = 2 * time.Second
	// poolForget drops the pool of an endpoint unused this long (pods come
	// and go; their IPs must not accumulate).
	poolForget = 5 * time.Minute
	// upstreamConns caps connections to one endpoint; more requests wait
	// in line for a free one (see newHostClient) instead of failing.
	upstreamConns = 1024
	DialTimeout   = 5 * time.Second
)

// Pools holds one fasthttp.HostClient per upstream address and timeouts.
type Pools struct {
	log zerolog.Logger
	mu  sync.Mutex // guards m and conns
	m   map[poolKey]*pool
	// conns caps the connections of each new pool: upstreamConns, lower
	// in tests of a full pool.
	conns int
}

type poolKey struct {
	addr    string
	timeout time.Duration
	// wait bounds the wait for a free connection (the service's timeout).
	wait time.Duration
}

type pool struct {
	hc       *fasthttp.HostClient
	lastUsed time.Time // guarded by Pools.mu
}

func NewPools(log zerolog.Logger) *Pools {
	return &Pools{log: log, m: make(map[poolKey]*pool), conns: upstreamConns}
}

// Get returns the client for addr, creating it on first use: timeout is
// the upstream's idle timeout, wait the longest wait for a free connection.
func (ps *Pools) Get(addr string, timeout, wait time.Duration) *fasthttp.HostClient {
	k := poolKey{addr, timeout, wait}
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.m[k]
	if !ok {
		p = &pool{hc: newHostClient(addr, timeout, wait, ps.conns)}
		ps.m[k] = p
	}
	p.lastUsed = now
	return p.hc
}

// newHostClient makes the pool of one endpoint. A request that finds all
// of its conns connections busy waits in line (fasthttp serves waiters
// first come, first served as connections free up) for up to wait, the
// service's timeout: the wait a request accepts for a service that cannot
// take it yet, whether it has no ready endpoint or no free connection.
// The wait counts from then, not from the request's arrival: fasthttp
// takes it per client, not per request. Then fasthttp returns
// ErrNoFreeConns, answered 503 with Retry-After (kind "pool_full"), nothing
// having been sent upstream (issue 10).
func newHostClient(addr string, timeout, wait time.Duration, conns int) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr: addr,
		Dial: func(addr string) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", addr, DialTimeout)
			if err != nil {
				return nil, err
			}
			return NewTrailerFieldConn(NewIdleConn(c, addr, timeout)), nil
		},
		// Forward exactly what the client sent (issue 2).
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		// Bodies are streamed, and the handler decides about retries.
		StreamResponseBody:  true,
		RetryIfErr:          retryIfErr,
		MaxIdleConnDuration: poolIdle,
		MaxConns:            conns,
		MaxConnWaitTimeout:  wait,
		ReadBufferSize:      16 << 10, // the largest response head we accept
		// A streamed request body goes upstream through this buffer, one
		// write(2) per fill: fasthttp's 4 KiB default made a 64 KiB POST
		// sixteen writes, each waking the upstream (BENCHMARKS.md, hot
		// spot 2). Writers are pooled per request, not held per connection.
		WriteBufferSize: 32 << 10,
	}
}

// retryIfErr lets fasthttp resend a bodiless idempotent request once a
// keep-alive connection turns out closed by the upstream before any
// response (the race RFC 9112 §9.3.1 allows to retry). Not after a dial
// error (the handler moves on to another endpoint), not after a timeout
// (the upstream got the request and is slow: 504), and a request with a
// body is never sent twice (issue 6).
func retryIfErr(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if attempts > 1 || req.IsBodyStream() || Kind(err) != stats.UpstreamClosed {
		return false, false
	}
	h := &req.Header
	return false, h.IsGet() || h.IsHead() || h.IsOptions()
}

// Janitor forgets Pools unused for poolForget until stop is closed.
func (ps *Pools) Janitor(stop <-chan struct{}) {
	t := time.NewTicker(poolForget / 5)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			ps.mu.Lock()
			for k, p := range ps.m {
				if now.Sub(p.lastUsed) > poolForget && p.hc.PendingRequests() == 0 {
					p.hc.CloseIdleConnections()
					delete(ps.m, k)
				}
			}
			ps.mu.Unlock()
		}
	}
}

// SetConns lowers the cap on connections to one endpoint, so a test can
// fill a pool with a few requests. Pools made before are dropped: call it
// while no request is in flight.
func (ps *Pools) SetConns(n int) {
	ps.CloseAll()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.conns = n
}

// CloseAll closes every pool's idle connections and forgets the pools.
func (ps *Pools) CloseAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.m {
		p.hc.CloseIdleConnections()
		delete(ps.m, k)
	}
}

// IdleConn fails a read or write that waits longer than timeout for the
// upstream: an idle timeout, like nginx's proxy_read_timeout, so a slow
// upstream gets a 504 while a long SSE stream that keeps talking lives on.
// fasthttp's own ReadTimeout would bound the whole response instead.
//
// It also replaces a pooled connection the upstream closed while it sat
// idle (see fresh), which fasthttp would otherwise write the next request
// to and fail.
type IdleConn struct {
	net.Conn
	addr    string
	timeout time.Duration
	// rd, wd are the read and write deadlines last set.
	rd, wd IdleDeadline
	// answered is set by a read and cleared by the next write: a write
	// with it set starts a new request on a reused connection. fasthttp's
	// HostClient writes a whole request before it reads (it neither
	// pipelines nor waits for 100 Continue), so a read never sits between
	// two writes of one request.
	answered bool
	raw      syscall.RawConn // of Conn, for fresh's peek
	peek     func(fd uintptr)
	gone     bool    // peek's answer
	pb       [1]byte // peek's buffer, here so it is not allocated per call
	// eof is set when a read reports EOF: a chunked response that ends
	// after that was cut short (clientconn.go). laddr carries it to the Response.
	eof   atomic.Bool
	laddr *addrConn
	// chunks follows the chunked body being read (trailerFieldConn keeps
	// it, ChunkReceived reads it: both on the goroutine reading the body).
	chunks chunkCount
}

// IdleDeadline is a read or write deadline kept timeout ahead of the last
// read or write: an idle timeout (upstream_timeout, client_body_timeout,
// send_timeout). It is moved only when less than 7/8 of the timeout is
// left, to keep timer updates off most reads and writes.
type IdleDeadline struct{ at time.Time }

// Due reports whether the deadline must move before the next read or
// write, and if so moves at to timeout from now: set it on the socket.
func (d *IdleDeadline) Due(timeout time.Duration) bool {
	now := time.Now()
	if d.at.Sub(now) >= timeout*7/8 {
		return false
	}
	d.at = now.Add(timeout)
	return true
}

// At is the deadline last set by Due.
func (d *IdleDeadline) At() time.Time { return d.at }

// WithIdleTimeout bounds each read and write of c by timeout, as for a
// pooled connection, for a connection outside the pools (a tunnel's
// handshake, an answer written on a taken-over socket).
func WithIdleTimeout(c net.Conn, timeout time.Duration) *IdleConn {
	return &IdleConn{Conn: c, timeout: timeout}
}

// errRedial fails a request whose pooled connection was closed by the
// upstream and which could not get a new one.
var errRedial = errors.New("upstream closed the pooled connection")

// NewIdleConn wraps a freshly dialled upstream connection.
func NewIdleConn(nc net.Conn, addr string, timeout time.Duration) *IdleConn {
	c := &IdleConn{Conn: nc, addr: addr, timeout: timeout}
	c.setRaw()
	return c
}

// setRaw keeps the socket's RawConn and a peek closure made once, so the
// check in fresh allocates nothing per request.
func (c *IdleConn) setRaw() {
	c.eof.Store(false)
	c.laddr = &addrConn{Addr: c.Conn.LocalAddr(), c: c}
	c.raw = nil
	if sc, ok := c.Conn.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	if c.peek == nil {
		c.peek = func(fd uintptr) {
			// The raw syscall: unix.Recvfrom allocates the sender's address.
			_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.pb[0])), 1,
				unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
			// Only "nothing to read yet" means alive. Success is an EOF or
			// bytes nobody asked for (an idle HTTP/1.1 upstream that sends
			// anything is broken, RFC 9112 §9.3); any other error a reset.
			c.gone = errno != unix.EAGAIN && errno != unix.EINTR
		}
	}
}

// fresh makes sure a reused connection is still open before the first
// byte of a new request goes out. An upstream closes idle keep-alive
// connections on its own timer; the FIN is already here when the proxy
// reuses the connection later, and writing a request to it fails in a
// way that must not be retried for a request with a body (RFC 9110
// §9.2.2: the upstream may have acted on it). Nothing of this request was
// written yet, so swapping in a new connection is invisible to fasthttp,
// which acquires its reader and writer per request. One non-blocking
// MSG_PEEK per reused request is the cost.
func (c *IdleConn) fresh() error {
	if c.raw == nil {
		return nil
	}
	c.gone = false
	if err := c.raw.Control(c.peek); err != nil || !c.gone {
		return nil
	}
	nc, err := net.DialTimeout("tcp", c.addr, DialTimeout)
	if err != nil {
		// Not wrapped with %w: the handler retries a refused dial from
		// the start, but fasthttp has read some of a streamed body into
		// its writer by now, so this must end as a 502.
		return fmt.Errorf("%w: redial %s: %v", errRedial, c.addr, err)
	}
	_ = c.Conn.Close()
	c.Conn = nc
	c.setRaw()
	if !c.rd.at.IsZero() {
		_ = nc.SetReadDeadline(c.rd.at)
	}
	if !c.wd.at.IsZero() {
		_ = nc.SetWriteDeadline(c.wd.at)
	}
	return nil
}

func (c *IdleConn) Read(b []byte) (int, error) {
	if c.rd.Due(c.timeout) {
		if err := c.Conn.SetReadDeadline(c.rd.at); err != nil {
			return 0, err
		}
	}
	c.answered = true
	n, err := c.Conn.Read(b)
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

// LocalAddr returns the connection's local address, which carries the
// connection to upstreamBody through the Response fasthttp reads.
func (c *IdleConn) LocalAddr() net.Addr {
	if c.laddr == nil { // an IdleConn not made by NewIdleConn (upgrade.go)
		return c.Conn.LocalAddr()
	}
	return c.laddr
}

func (c *IdleConn) Write(b []byte) (int, error) {
	if c.answered {
		c.answered = false
		if err := c.fresh(); err != nil {
			return 0, err
		}
	}
	if c.wd.Due(c.timeout) {
		if err := c.Conn.SetWriteDeadline(c.wd.at); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

// SetReadDeadline and SetWriteDeadline ignore fasthttp's resets to "no
// deadline" so the idle deadline stays in force; real deadlines pass.
func (c *IdleConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	c.rd.at = t
	return c.Conn.SetReadDeadline(t)
}

func (c *IdleConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	c.wd.at = t
	return c.Conn.SetWriteDeadline(t)
}
