package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/fields"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/upstream"
)

// Request checks fasthttp does not make, for an edge proxy that must be at
// least as strict as Envoy and HAProxy (issue 6). fasthttp parses a
// request and Agimo re-frames it for the upstream, so the danger is any
// request a front proxy or the upstream could read differently.

// checkRequest returns a status to reject the request with (0 to accept)
// and why. It runs before routing; the common request costs one scan of
// its raw head.
func checkRequest(ctx *fasthttp.RequestCtx) (int, string) {
	h := &ctx.Request.Header
	if h.IsConnect() {
		// Agimo is not a forward proxy: CONNECT is never tunnelled.
		return fasthttp.StatusMethodNotAllowed, "CONNECT is not supported"
	}
	switch p := h.Protocol(); {
	case bytes.Equal(p, strHTTP11), bytes.Equal(p, strHTTP10):
	case len(p) == 8 && bytes.HasPrefix(p, []byte("HTTP/1.")):
		// A later HTTP/1.x minor is served as HTTP/1.1 (RFC 9110 §6.2).
		h.SetProtocolBytes(strHTTP11)
	default:
		return fasthttp.StatusHTTPVersionNotSupported, "HTTP version not supported"
	}
	if uri := h.RequestURI(); len(uri) > 0 && uri[0] != '/' &&
		!route.IsAbsoluteForm(uri) && !(len(uri) == 1 && uri[0] == '*' && h.IsOptions()) {
		return fasthttp.StatusBadRequest, "invalid request target"
	}
	return checkFields(h.RawHeaders())
}

var (
	strHTTP11 = []byte("HTTP/1.1")
	strHTTP10 = []byte("HTTP/1.0")
)

// checkFields scans the header block as received. It rejects a field name
// that is not a token (RFC 9110 §5.1), any Transfer-Encoding fasthttp did
// not take as chunked: "identity", or a list fasthttp accepted, would let
// the body be read as a next request (request smuggling, RFC 9112 §6.3),
// and Content-Length together with Transfer-Encoding: fasthttp would
// forward such a request as chunked, yet it is what a front proxy and an
// upstream read differently, and RFC 9112 §6.1 lets a server reject it.
// Names with an underscore are dropped in prepareRequest.
func checkFields(raw []byte) (int, string) {
	var length, coding bool
	for len(raw) > 0 {
		var line []byte
		line, raw = cutLine(raw)
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			if line[0] == ' ' || line[0] == '\t' {
				continue // obs-fold continuation, already refused or unfolded by fasthttp
			}
			return fasthttp.StatusBadRequest, "malformed header field"
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return fasthttp.StatusBadRequest, "invalid header field name"
			}
		}
		switch {
		case fields.IsTransferEncoding(name):
			if !bytes.EqualFold(bytes.Trim(line[colon+1:], " \t"), []byte("chunked")) {
				return fasthttp.StatusBadRequest, "unsupported Transfer-Encoding"
			}
			coding = true
		case fields.IsContentLength(name):
			length = true
		}
		if length && coding {
			return fasthttp.StatusBadRequest, "Content-Length with Transfer-Encoding"
		}
	}
	return 0, ""
}

// cutLine splits raw at its first LF: the line before it, and the rest.
func cutLine(raw []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(raw, []byte{'\n'})
	return line, rest
}

// isTokenChar reports whether c may appear in a token (RFC 9110 §5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// hasUnderscoreName reports whether some field name contains '_'.
func hasUnderscoreName(raw []byte) bool {
	if bytes.IndexByte(raw, '_') < 0 {
		return false
	}
	for len(raw) > 0 {
		var line []byte
		line, raw = cutLine(raw)
		if colon := bytes.IndexByte(line, ':'); colon > 0 && bytes.IndexByte(line[:colon], '_') >= 0 {
			return true
		}
	}
	return false
}

// dropUnderscoreNames removes fields whose name has an underscore: behind
// the proxy, "X_Forwarded_For" may be read as X-Forwarded-For (CGI maps
// both to HTTP_X_FORWARDED_FOR), so nginx drops them too.
func dropUnderscoreNames(h *fasthttp.RequestHeader) {
	var names [][]byte
	for k := range h.All() {
		if bytes.IndexByte(k, '_') >= 0 {
			names = append(names, append([]byte(nil), k...))
		}
	}
	for _, k := range names {
		h.DelBytes(k)
	}
}

// clientBody marks errors reading the client's request body, so that a
// malformed chunk is answered 400, not blamed on the upstream (502), and
// keeps the first error: fasthttp's chunked writer may read on after an
// error returned with data, re-framing garbage.
//
// It also bounds each read (client_body_timeout) and checks the body's
// clean end, so that a client that stalls or leaves mid-body is told from
// an upstream that fails (issue 10).
type clientBody struct {
	r    io.Reader
	err  error
	conn upstream.EOFWatcher // set for a chunked body (clientconn.go)
	// left counts the bytes a body of declared length still owes (-1 for
	// a chunked one): fasthttp's request stream ends a body cut short by
	// the client with a clean io.EOF.
	left int64
	// client is the connection the body arrives on. Each read may wait
	// timeout for it (nginx's client_body_timeout: between two reads, not
	// for the whole body); rd is the deadline last set. Nothing else touches the connection's read deadline
	// while the body streams: fasthttp's HostClient reads it whole before
	// the upstream's answer, and a request parks before its first read.
	client  net.Conn
	timeout time.Duration
	rd      upstream.IdleDeadline
	// x counts the body's bytes for the access log.
	x *exchange
}

type clientBodyError struct{ err error }

func (e clientBodyError) Error() string { return "read request body: " + e.err.Error() }
func (e clientBodyError) Unwrap() error { return e.err }

func (b *clientBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.timeout > 0 {
		if b.rd.Due(b.timeout) {
			if err := b.client.SetReadDeadline(b.rd.At()); err != nil {
				b.err = clientBodyError{err}
				return 0, b.err
			}
		}
	}
	n, err := b.r.Read(p)
	if b.x != nil {
		b.x.bytesIn += int64(n)
	}
	if b.left >= 0 {
		if b.left -= int64(n); err == io.EOF && b.left > 0 {
			err = io.ErrUnexpectedEOF // RFC 9112 §8: an incomplete message
		}
	}
	err = upstream.ChunkedEnd(err, b.conn)
	if err != nil && !errors.Is(err, io.EOF) {
		// Drop bytes that came with a framing error, and fail for good.
		b.err = clientBodyError{err}
		return 0, b.err
	}
	return n, err
}
