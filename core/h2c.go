package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
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
// A request body that is a *HeldBody is released when the round trip
// fails and when the response body is closed.
func (c *Core) RoundTripH2C(req *http.Request, r *route.Route, st *watch.State, deadline time.Time,
	repark func() (*watch.State, error)) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	idle := upstream.NewIdleTimer(r.UpstreamTimeout, cancel)
	out := req.WithContext(ctx)
	held, _ := out.Body.(*HeldBody)
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
		held.Release()
		if idle.Fired() {
			return nil, fmt.Errorf("no response head within %v: %w", r.UpstreamTimeout, os.ErrDeadlineExceeded)
		}
		return nil, err
	}
	idle.Touch()
	resp.Body = &h2cBody{ReadCloser: idle.WrapBody(resp.Body), idle: idle, cancel: cancel, held: held}
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
	held   *HeldBody
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
	b.held.Release()
	return err
}

// HeldBody lends a front end's request body to the h2c transport and
// takes it back. x/net/http2 reads a request body on a goroutine of its
// own, which can outlive RoundTrip (a cancelled request returns without
// waiting for it) and the response body's Close (which stops waiting
// once the request's context ends). A front end whose body is gone once
// its handler returns — fasthttp reuses the request and its stream,
// x/net/http2 recycles the stream's writer — must have it back before.
//
// Release waits for a read in progress, which interrupt (the front end's
// way to end a read at once: a past read deadline) makes return, and
// fails every later read. A read Release interrupts fails the request's
// body: the front end closes the connection, or resets the stream.
type HeldBody struct {
	r         io.Reader
	interrupt func()
	reading   atomic.Bool
	releasing atomic.Bool
	stopped   atomic.Bool // a read was interrupted

	mu       sync.Mutex // held by each read
	released bool
}

// errBodyReleased fails the reads of a released body.
var errBodyReleased = errors.New("request body released by the front end")

// NewHeldBody lends r; interrupt may be nil if a read of r never blocks
// for long.
func NewHeldBody(r io.Reader, interrupt func()) *HeldBody {
	return &HeldBody{r: r, interrupt: interrupt}
}

func (b *HeldBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released {
		return 0, errBodyReleased
	}
	// Stored, then checked, as Release stores releasing then checks
	// reading: either this read sees the release, or Release sees it.
	b.reading.Store(true)
	defer b.reading.Store(false)
	if b.releasing.Load() {
		return 0, errBodyReleased
	}
	return b.r.Read(p)
}

// Close does nothing: the body is the front end's to close, and after a
// refused connection, which sent nothing, the next attempt reads it.
func (b *HeldBody) Close() error { return nil }

// Release takes the body back: when it returns, no read of it is in
// progress and none will be. It may be called more than once, and on nil.
func (b *HeldBody) Release() {
	if b == nil {
		return
	}
	if b.releasing.CompareAndSwap(false, true) && b.reading.Load() && b.interrupt != nil {
		b.stopped.Store(true)
		b.interrupt()
	}
	b.mu.Lock()
	b.released = true
	b.mu.Unlock()
}

// Interrupted reports whether Release ended a read in progress: the
// body's read error, if any, is then Release's doing, not the client's,
// and the client's connection or stream can carry nothing more.
func (b *HeldBody) Interrupted() bool { return b != nil && b.stopped.Load() }
