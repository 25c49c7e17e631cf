package core

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/upstream"
	"github.com/agimo/agimo/watch"
)

// RoundTripH2C sends req to one of r's ready endpoints over h2c, retrying
// a refused connection like Attempt, and bounds each silence of the
// upstream by r's upstream_timeout: before the response head and between
// reads of its body. req's URL is pointed at the endpoint. The response
// body's Close ends the request's context. Both front ends use it: the
// HTTP/2 one through httputil.ReverseProxy, the HTTP/1.1 one directly.
func (c *Core) RoundTripH2C(req *http.Request, r *route.Route, st *watch.State, deadline time.Time,
	repark func() (*watch.State, error)) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	idle := upstream.NewIdleTimer(r.UpstreamTimeout, cancel)
	out := req.WithContext(ctx)
	if out.Body != nil && out.Body != http.NoBody {
		// A refused connection sent nothing, so the body can go on the
		// next attempt: x/net/http2 must not close it in between. Each
		// read of it restarts the idle timer: while the client is still
		// sending, the upstream is waiting, not silent (a gRPC client
		// stream is answered at its end), as an HTTP/1.1 upstream is not
		// timed while its request is written.
		out.Body = keepOpen{idle.WrapBody(out.Body)}
	}
	var resp *http.Response
	err := c.Attempt(r, st, deadline, repark, func(addr string) error {
		out.URL.Scheme, out.URL.Host = "http", addr
		var err error
		resp, err = c.H2C.RoundTrip(out)
		return err
	})
	if err != nil {
		idle.Stop()
		cancel()
		if idle.Fired() {
			return nil, fmt.Errorf("no response head within %v: %w", r.UpstreamTimeout, os.ErrDeadlineExceeded)
		}
		return nil, err
	}
	idle.Touch()
	resp.Body = &h2cBody{ReadCloser: idle.WrapBody(resp.Body), idle: idle, cancel: cancel}
	return resp, nil
}

// keepOpen hides Close from the transport; the front end closes the body.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }

// h2cBody ends the request's context and its idle timer on Close, and
// reports a stream the idle timer reset as a timeout.
type h2cBody struct {
	io.ReadCloser
	idle   *upstream.IdleTimer
	cancel context.CancelFunc
}

func (b *h2cBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.idle.Fired() {
		err = fmt.Errorf("upstream silent for %w", os.ErrDeadlineExceeded)
	}
	return n, err
}

func (b *h2cBody) Close() error {
	b.idle.Stop()
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
