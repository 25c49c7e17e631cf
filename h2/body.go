package h2

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/upstream"
)

// clientBody bounds each read of a request body by client_body_timeout,
// as the HTTP/1.1 front end does: a stream whose client sends no byte of
// its body for that long fails with 408 (RFC 9110 §15.5.9) rather than
// holding an upstream connection. x/net/http2 supports per-stream read
// deadlines through http.ResponseController.
type clientBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	rd      upstream.IdleDeadline
	// mu guards err: towards an h2c upstream, x/net/http2's transport
	// reads the body on a goroutine of its own, which may still run (or
	// have ended unsynchronised) when the front end asks why the round
	// trip failed.
	mu          sync.Mutex
	err         error // the first read error other than EOF
	interrupted bool  // reads fail because of interrupt, not the client
}

func newClientBody(w http.ResponseWriter, body io.ReadCloser, timeout time.Duration) *clientBody {
	return &clientBody{ReadCloser: body, rc: http.NewResponseController(w), timeout: timeout}
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.timeout > 0 && b.rd.Due(b.timeout) {
		_ = b.rc.SetReadDeadline(b.rd.At())
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil && !b.interrupted {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// interrupt ends a read in progress, and every later one, with an error
// that is not the client's (core.HeldBody). It must be called while the
// handler runs.
func (b *clientBody) interrupt() {
	b.mu.Lock()
	b.interrupted = true
	b.mu.Unlock()
	// A deadline in the past closes the stream's body at once (x/net/http2).
	_ = b.rc.SetReadDeadline(time.Now().Add(-time.Second))
}

// failed reports the client's side of a failed exchange: the status to
// answer and the client error kind, or 0 if the body did not fail.
func (b *clientBody) failed() (int, string) {
	if b == nil {
		return 0, ""
	}
	b.mu.Lock()
	err := b.err
	b.mu.Unlock()
	if err == nil {
		return 0, ""
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, ""
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, "body_timeout"
	}
	return http.StatusBadRequest, "aborted"
}

// requestTrailers passes a request body on to an HTTP/1.1 upstream and,
// at its end, puts the trailers the client sent after it (RFC 9113 §8.1)
// in the chunked body's trailer section, which fasthttp writes after the
// last chunk: as the HTTP/1.1 front end passes request trailers on, minus
// the fields that may not be trailers (RFC 9110 §6.5.1).
type requestTrailers struct {
	io.Reader
	h  *fasthttp.RequestHeader
	in http.Header // x/net/http2 fills it when the body ends
}

// newRequestTrailers announces on h the trailers the request declared
// (in, its Trailer field's names) and returns body wrapped to send them.
func newRequestTrailers(body io.Reader, h *fasthttp.RequestHeader, in http.Header) io.Reader {
	if len(in) == 0 {
		return body
	}
	for k := range in {
		if upstream.TrailerName([]byte(k), nil) {
			_ = h.AddTrailer(k)
		}
	}
	return &requestTrailers{Reader: body, h: h, in: in}
}

func (b *requestTrailers) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF && b.in != nil {
		for k, vv := range b.in {
			if upstream.TrailerName([]byte(k), nil) {
				for _, v := range vv {
					b.h.Add(k, v)
				}
			}
		}
		b.in = nil
	}
	return n, err
}
