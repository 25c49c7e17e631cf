package proxy

import (
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
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
	// for a free one up to their deadline instead of failing.
	upstreamConns = 1024
	dialTimeout   = 5 * time.Second
)

// pools holds one fasthttp.HostClient per upstream address and timeout.
type pools struct {
	log zerolog.Logger
	mu  sync.Mutex // guards m
	m   map[poolKey]*pool
}

type poolKey struct {
	addr    string
	timeout time.Duration
}

type pool struct {
	hc       *fasthttp.HostClient
	lastUsed time.Time // guarded by pools.mu
}

func newPools(log zerolog.Logger) *pools {
	return &pools{log: log, m: make(map[poolKey]*pool)}
}

// get returns the client for addr, creating it on first use.
func (ps *pools) get(addr string, timeout time.Duration) *fasthttp.HostClient {
	k := poolKey{addr, timeout}
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.m[k]
	if !ok {
		p = &pool{hc: newHostClient(addr, timeout)}
		ps.m[k] = p
	}
	p.lastUsed = now
	return p.hc
}

func newHostClient(addr string, timeout time.Duration) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr: addr,
		Dial: func(addr string) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", addr, dialTimeout)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, timeout: timeout}, nil
		},
		// Forward exactly what the client sent (issue 2).
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		// Bodies are streamed, and the handler decides about retries.
		StreamResponseBody:  true,
		RetryIfErr:          retryIfErr,
		MaxIdleConnDuration: poolIdle,
		MaxConns:            upstreamConns,
		MaxConnWaitTimeout:  timeout,
		ReadBufferSize:      16 << 10, // the largest response head we accept
	}
}

// retryIfErr lets fasthttp resend a bodiless idempotent request once a
// keep-alive connection turns out closed by the upstream before any
// response (the race RFC 9112 §9.3.1 allows to retry). Not after a dial
// error (the handler moves on to another endpoint), not after a timeout
// (the upstream got the request and is slow: 504), and a request with a
// body is never sent twice (issue 6).
func retryIfErr(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if attempts > 1 || req.IsBodyStream() || errorKind(err) != errClosed {
		return false, false
	}
	h := &req.Header
	return false, h.IsGet() || h.IsHead() || h.IsOptions()
}

// janitor forgets pools unused for poolForget until stop is closed.
func (ps *pools) janitor(stop <-chan struct{}) {
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

func (ps *pools) closeAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.m {
		p.hc.CloseIdleConnections()
		delete(ps.m, k)
	}
}

// idleConn fails a read or write that waits longer than timeout for the
// upstream: an idle timeout, like nginx's proxy_read_timeout, so a slow
// upstream gets a 504 while a long SSE stream that keeps talking lives on.
// fasthttp's own ReadTimeout would bound the whole response instead.
type idleConn struct {
	net.Conn
	timeout time.Duration
	// rd, wd are the deadlines last set; refreshed when less than 7/8 of
	// the timeout is left, to keep timer updates off most reads.
	rd, wd time.Time
}

func (c *idleConn) Read(b []byte) (int, error) {
	if now := time.Now(); c.rd.Sub(now) < c.timeout*7/8 {
		c.rd = now.Add(c.timeout)
		if err := c.Conn.SetReadDeadline(c.rd); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	if now := time.Now(); c.wd.Sub(now) < c.timeout*7/8 {
		c.wd = now.Add(c.timeout)
		if err := c.Conn.SetWriteDeadline(c.wd); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

// SetReadDeadline and SetWriteDeadline ignore fasthttp's resets to "no
// deadline" so the idle deadline stays in force; real deadlines pass.
func (c *idleConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	c.rd = t
	return c.Conn.SetReadDeadline(t)
}

func (c *idleConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	c.wd = t
	return c.Conn.SetWriteDeadline(t)
}
