package proxy

import (
	"bytes"
	"io"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/upstream"
)

// Trailer fields (RFC 9110 §6.5) pass through the proxy both ways, like
// header fields: minus hop-by-hop ones (RFC 9110 §7.6.1, those named in
// Connection included) and those not allowed in a trailer section (§6.5.1:
// framing, routing, authentication, request modifiers, response control),
// which fasthttp refuses to announce or send. The Trailer field itself is
// end-to-end (§6.6.2) and goes along, announcing what is left. fasthttp
// reads a chunked body's trailer section into the message's header when the
// body stream reaches its end, and writes the outgoing message's trailer
// section after the last chunk: so the section is copied over, for a
// response, and filtered, for a request, at the end of the body stream.
// fasthttp's parser fails a response that names or sends a field it
// refuses in trailers: trailerconn.go takes those out before it parses.

// announceTrailers announces on dst the trailer fields src announced that
// may go on, and nothing else: a name fasthttp refuses (Set-Cookie) is
// dropped, not the response.
func announceTrailers(dst, src *fasthttp.ResponseHeader, listed []byte) {
	for name := range src.Trailers() {
		if upstream.TrailerName(name, listed) {
			_ = dst.AddTrailerBytes(name)
		}
	}
}

// appendTrailerAnnouncement appends the Trailer field of a response
// written by hand (upgrade.go), announcing what announceTrailers would.
func appendTrailerAnnouncement(dst []byte, h *fasthttp.ResponseHeader, listed []byte) []byte {
	kept := false
	for name := range h.Trailers() {
		if !upstream.TrailerName(name, listed) {
			continue
		}
		if kept {
			dst = append(dst, ", "...)
		} else {
			dst = append(dst, "Trailer: "...)
		}
		dst = append(dst, name...)
		kept = true
	}
	if kept {
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// copyTrailers adds the trailer section src received (its TrailerHeader,
// "Name: value" lines) to dst's, minus the fields that must not go on. The
// head is written by then, so names announced now only place values.
func copyTrailers(dst *fasthttp.ResponseHeader, section, listed []byte) {
	for len(section) > 0 {
		var line []byte
		line, section = cutLine(section)
		k, v, ok := bytes.Cut(bytes.TrimSuffix(line, []byte{'\r'}), []byte{':'})
		if !ok || !upstream.TrailerName(k, listed) || dst.AddTrailerBytes(k) != nil {
			continue
		}
		dst.AddBytesKV(k, bytes.TrimLeft(v, " \t"))
	}
}

// appendTrailerSection appends the trailer section src received, minus the
// fields that must not go on, for a response written by hand (relayRefusal).
func appendTrailerSection(dst, section, listed []byte) []byte {
	for len(section) > 0 {
		var line []byte
		line, section = cutLine(section)
		if k, _, ok := bytes.Cut(line, []byte{':'}); ok && upstream.TrailerName(k, listed) {
			dst = append(append(dst, line...), '\n')
		}
	}
	return append(dst, "\r\n"...)
}

// requestTrailers passes a chunked request body on and, at its end, drops
// from the request's trailer section the fields that must not go upstream:
// the client's Connection, which named some, is gone from the request by
// then, so its list is kept here.
type requestTrailers struct {
	r      io.Reader
	h      *fasthttp.RequestHeader
	listed []byte
}

func (b *requestTrailers) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		var drop [][]byte
		for name := range b.h.Trailers() {
			if !upstream.TrailerName(name, b.listed) {
				drop = append(drop, bytes.Clone(name))
			}
		}
		for _, name := range drop {
			b.h.DelBytes(name)
		}
	}
	return n, err
}

// prepareRequestTrailers keeps the client's Trailer announcement minus the
// names that must not go upstream, and filters the trailer section the
// same way when the chunked body ends. A request without a body loses the
// announcement: there is no trailer section to announce, and fasthttp would
// frame an announcing request as chunked, inventing a body.
func prepareRequestTrailers(req *fasthttp.Request, listed []byte) {
	h := &req.Header
	if len(h.PeekTrailerKeys()) == 0 && h.ContentLength() != -1 {
		return
	}
	if h.ContentLength() == -1 && req.IsBodyStream() {
		req.SetBodyStream(&requestTrailers{r: req.BodyStream(), h: h, listed: bytes.Clone(listed)}, -1)
	}
	keep := make([]byte, 0, 64)
	for name := range h.Trailers() {
		if upstream.TrailerName(name, listed) {
			keep = append(append(keep, name...), ',')
		}
	}
	if len(keep) == 0 || h.ContentLength() == -2 || h.ContentLength() == 0 {
		h.Del(fasthttp.HeaderTrailer)
		return
	}
	_ = h.SetTrailerBytes(keep[:len(keep)-1])
}
