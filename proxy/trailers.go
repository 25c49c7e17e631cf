package proxy

import (
	"bytes"
	"io"
	"net"

	"github.com/valyala/fasthttp"
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

// trailerName reports whether name may be announced and sent as a trailer
// field: not hop-by-hop, and accepted by fasthttp, whose list of fields
// not allowed in trailers (isBadTrailer) is the one its parser enforces.
func trailerName(name, listed []byte) bool {
	if isHopByHop(name, listed) {
		return false
	}
	var h fasthttp.ResponseHeader
	return h.AddTrailerBytes(name) == nil
}

// announceTrailers announces on dst the trailer fields src announced that
// may go on, and nothing else: a name fasthttp refuses (Set-Cookie) is
// dropped, not the response.
func announceTrailers(dst, src *fasthttp.ResponseHeader, listed []byte) {
	for name := range src.Trailers() {
		if trailerName(name, listed) {
			_ = dst.AddTrailerBytes(name)
		}
	}
}

// appendTrailerAnnouncement appends the Trailer field of a response
// written by hand (upgrade.go), announcing what announceTrailers would.
func appendTrailerAnnouncement(dst []byte, h *fasthttp.ResponseHeader, listed []byte) []byte {
	kept := false
	for name := range h.Trailers() {
		if !trailerName(name, listed) {
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
		if !ok || !trailerName(k, listed) || dst.AddTrailerBytes(k) != nil {
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
		if k, _, ok := bytes.Cut(line, []byte{':'}); ok && trailerName(k, listed) {
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
			if !trailerName(name, b.listed) {
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
		if trailerName(name, listed) {
			keep = append(append(keep, name...), ',')
		}
	}
	if len(keep) == 0 || h.ContentLength() == -2 || h.ContentLength() == 0 {
		h.Del(fasthttp.HeaderTrailer)
		return
	}
	_ = h.SetTrailerBytes(keep[:len(keep)-1])
}

// trailerFieldConn filters the Trailer fields of the response heads read
// from an upstream connection, before fasthttp parses them. fasthttp fails
// a whole response whose Trailer names a field it refuses in trailers
// (Set-Cookie, say): a 502 for a response that is fine but for one field
// the proxy would drop anyway. Such names are taken out of the field (the
// line goes if none is left); everything else passes unchanged. A head
// starts with the first read after a write (fasthttp's client neither
// pipelines nor reads before its request is written) and after an interim
// 1xx head; it ends at its blank line, and the body's bytes are not looked
// at. Heads without a Trailer field, nearly all, are not copied.
type trailerFieldConn struct {
	net.Conn
	head    bool   // reading a response head
	bol     bool   // at the beginning of a line of the head
	status  bool   // the status line is next
	interim bool   // the head is a 1xx but 101: another head follows
	held    []byte // the start of a line that may be a Trailer field or the blank line
	out     []byte // filtered bytes not yet returned
	err     error  // the read error to return once out is empty
}

// maxHeldLine bounds a head line held back: the upstream read buffer.
const maxHeldLine = 16 << 10

func newTrailerFieldConn(c net.Conn) *trailerFieldConn {
	return &trailerFieldConn{Conn: c, head: true, bol: true, status: true}
}

func (c *trailerFieldConn) Write(b []byte) (int, error) {
	if !c.head {
		c.head, c.bol, c.status = true, true, true
	}
	return c.Conn.Write(b)
}

func (c *trailerFieldConn) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			err := c.err
			c.err = nil
			return 0, err
		}
		if !c.head {
			return c.Conn.Read(b)
		}
		n, err := c.Conn.Read(b)
		if len(c.held) == 0 && c.plain(b[:n]) {
			return n, err
		}
		c.filter(b[:n])
		if err != nil {
			// The head ended early: give back what was held as it was.
			c.out = append(c.out, c.held...)
			c.held = c.held[:0]
			c.err = err
		}
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = nil
	}
	return n, nil
}

// plain follows the head in p, which starts at a line's beginning, and
// reports whether p can be returned as it is: it ends the head (not an
// interim one) and has no Trailer field. Then it leaves head mode.
func (c *trailerFieldConn) plain(p []byte) bool {
	if !c.bol {
		return false
	}
	status, interim := c.status, c.interim
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return false
		}
		line := p[:i]
		switch {
		case status:
			if isInterim(line) {
				return false
			}
			status, interim = false, false
		case len(line) == 0 || len(line) == 1 && line[0] == '\r':
			if interim {
				return false
			}
			c.head = false
			return true
		case isTrailerField(line):
			return false
		}
		p = p[i+1:]
	}
	return false
}

// filter follows the head in p line by line into out, rewriting Trailer
// fields and holding back a line start that may be one until it ends.
func (c *trailerFieldConn) filter(p []byte) {
	for len(p) > 0 {
		if !c.head {
			c.out = append(c.out, p...)
			return
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if c.bol || len(c.held) > 0 {
				c.held = append(c.held, p...)
			} else {
				c.out = append(c.out, p...)
			}
			if len(c.held) > maxHeldLine {
				// Longer than any head fasthttp reads: let it fail there.
				c.out = append(c.out, c.held...)
				c.held, c.bol = c.held[:0], false
			}
			return
		}
		line := p[:i+1]
		if len(c.held) > 0 {
			line = append(c.held, line...)
			c.held = c.held[:0]
		} else if !c.bol {
			c.out = append(c.out, line...)
			c.bol = true
			p = p[i+1:]
			continue
		}
		p = p[i+1:]
		body := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
		switch {
		case c.status:
			c.interim = isInterim(body)
			c.status = false
			c.out = append(c.out, line...)
		case len(body) == 0:
			c.out = append(c.out, line...)
			if c.interim {
				c.status = true
			} else {
				c.head = false
			}
		case isTrailerField(body):
			c.out = appendTrailerField(c.out, body)
		default:
			c.out = append(c.out, line...)
		}
		c.bol = true
	}
}

// isInterim reports whether a status line is a 1xx other than 101, which
// another head follows (RFC 9110 §15.2).
func isInterim(line []byte) bool {
	_, code, _ := bytes.Cut(line, []byte{' '})
	return len(code) >= 3 && code[0] == '1' && !bytes.HasPrefix(code, []byte("101"))
}

// isTrailerField reports whether a header line is a Trailer field (a
// space before the colon is tolerated, as fasthttp does).
func isTrailerField(line []byte) bool {
	if len(line) < len("Trailer:") || line[0]|0x20 != 't' {
		return false // most lines, at the cost of one comparison
	}
	name, _, ok := bytes.Cut(line, []byte{':'})
	return ok && bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte(fasthttp.HeaderTrailer))
}

// appendTrailerField appends the Trailer field line with only the names
// fasthttp accepts in trailers, or nothing if none is left.
func appendTrailerField(dst, line []byte) []byte {
	name, list, _ := bytes.Cut(line, []byte{':'})
	start := len(dst)
	dst = append(append(dst, name...), ':')
	kept := 0
	for len(list) > 0 {
		var el []byte
		el, list, _ = bytes.Cut(list, []byte{','})
		if el = bytes.Trim(el, " \t"); len(el) == 0 || !trailerName(el, nil) {
			continue
		}
		if kept > 0 {
			dst = append(dst, ',')
		}
		dst = append(append(dst, ' '), el...)
		kept++
	}
	if kept == 0 {
		return dst[:start]
	}
	return append(dst, "\r\n"...)
}
