package upstream

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// H2C carries requests to upstreams that speak HTTP/2 without TLS (prior
// knowledge, RFC 9113 §3.3): a Service port with appProtocol
// kubernetes.io/h2c, or protocol = "h2c". x/net/http2's Transport keeps
// one multiplexed connection per endpoint, so gRPC streams share it as
// they would towards any gRPC server.
type H2C struct {
	t *http2.Transport
}

// NewH2C returns an empty h2c transport.
func NewH2C() *H2C {
	d := &net.Dialer{Timeout: DialTimeout}
	return &H2C{t: &http2.Transport{
		// "http" URLs over a plain TCP connection: DialTLSContext is the
		// hook x/net/http2 offers for the connection, and it gets none of
		// the TLS config.
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		// A silent connection is checked with a PING, and closed if the
		// upstream does not answer: a pod that vanished without a FIN.
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     5 * time.Second,
		// Like the HTTP/1.1 pools (poolIdle), but an h2 connection is
		// shared by every stream, so it idles less often.
		IdleConnTimeout: 90 * time.Second,
	}}
}

// RoundTrip sends req (URL scheme "http", host the endpoint's address).
func (h *H2C) RoundTrip(req *http.Request) (*http.Response, error) { return h.t.RoundTrip(req) }

// CloseIdle closes the connections that carry no stream.
func (h *H2C) CloseIdle() { h.t.CloseIdleConnections() }

// IdleBody fails a response body whose upstream stays silent for timeout
// (upstream_timeout), by calling cancel, which resets the stream: the
// idle timeout the HTTP/1.1 pools keep per read (IdleConn). The wait for
// the response head is bounded by the same timer, started by NewIdleTimer.
type IdleBody struct {
	io.ReadCloser
	t *IdleTimer
}

// IdleTimer cancels a request once it has been silent for its timeout.
type IdleTimer struct {
	mu      sync.Mutex
	timer   *time.Timer
	timeout time.Duration
	fired   bool
}

// NewIdleTimer starts a timer that calls cancel after timeout unless it
// is touched before.
func NewIdleTimer(timeout time.Duration, cancel func()) *IdleTimer {
	t := &IdleTimer{timeout: timeout}
	t.timer = time.AfterFunc(timeout, func() {
		t.mu.Lock()
		t.fired = true
		t.mu.Unlock()
		cancel()
	})
	return t
}

// Touch restarts the timer: the upstream just spoke.
func (t *IdleTimer) Touch() { t.timer.Reset(t.timeout) }

// Stop stops the timer for good.
func (t *IdleTimer) Stop() { t.timer.Stop() }

// Fired reports whether the timer cancelled the request.
func (t *IdleTimer) Fired() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fired
}

// WrapBody makes each read of body restart t.
func (t *IdleTimer) WrapBody(body io.ReadCloser) io.ReadCloser {
	return &IdleBody{ReadCloser: body, t: t}
}

func (b *IdleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.t.Touch()
	}
	return n, err
}
