package upstream

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/stats"
)

// Kind classifies an upstream exchange's error into one of
// stats.UpstreamKinds, the "kind" label of agimo_upstream_errors_total.
func Kind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return stats.UpstreamPoolFull
	case IsRefused(err):
		return stats.UpstreamRefused
	case errors.Is(err, errRedial):
		// The pooled connection was gone and a new one could not be
		// dialled (not retried: part of the request may be written).
		return stats.UpstreamDial
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return stats.UpstreamTimeout
	case isDialError(err):
		return stats.UpstreamDial
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return stats.UpstreamClosed
	}
	// What is left is either an I/O failure or fasthttp rejecting what
	// the upstream sent (a malformed status line, head or chunk).
	var errno syscall.Errno
	if errors.As(err, &ne) || errors.As(err, &errno) {
		return stats.UpstreamOther
	}
	return stats.UpstreamProtocol
}

// IsRefused reports a connection refused: an endpoint just announced
// ready that does not listen yet, or one already gone. The request is
// retried until its deadline (issue 2).
func IsRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// EOFWatcher is a connection that can tell whether a read from it
// reported EOF: a client's connection, or an upstream's (ConnOf).
type EOFWatcher interface{ SawEOF() bool }

// ErrTruncated replaces the clean end fasthttp reports for a chunked body
// whose connection reported EOF before the last chunk.
var ErrTruncated = errors.New("chunked body ended without its last chunk")

// ChunkedEnd checks a chunked body's clean end: it turns io.EOF into
// ErrTruncated if conn reported EOF first.
func ChunkedEnd(err error, conn EOFWatcher) error {
	if err == io.EOF && conn != nil && conn.SawEOF() {
		return ErrTruncated
	}
	return err
}

// addrConn is the local address of an upstream connection, carrying the
// connection itself: fasthttp stores a connection's LocalAddr in each
// Response read from it, which is how ConnOf finds the socket under a
// streamed response.
type addrConn struct {
	net.Addr
	c *IdleConn
}

func (a *addrConn) SawEOF() bool { return a.c.eof.Load() }

func (a *addrConn) ChunkReceived(read int) bool { return a.c.chunks.received(read) }

// BodyConn is the upstream connection a streamed response is read from.
type BodyConn interface {
	EOFWatcher
	// ChunkReceived reports whether, past the first read data bytes of the
	// chunked body being read, a whole chunk (its CRLF included) has been
	// received: reading it from the body stream cannot wait on the
	// upstream (chunkcount.go).
	ChunkReceived(read int) bool
}

// ConnOf returns the upstream connection resp was read from, or nil.
func ConnOf(resp *fasthttp.Response) BodyConn {
	if a, ok := resp.LocalAddr().(*addrConn); ok {
		return a
	}
	return nil
}
