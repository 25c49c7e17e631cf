package upstream

import (
	"bytes"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/fields"
)

// trailerFieldConn takes out of an upstream's response the trailer fields
// fasthttp refuses, before fasthttp parses them. fasthttp fails a whole
// response whose Trailer field names one (Set-Cookie, say), a 502 for a
// response that is fine but for a field the proxy would drop anyway, and
// fails the body of one whose trailer section holds one, which reaches the
// client cut short. So such names are taken out of a head's Trailer field
// (the line goes if none is left), and, when that happened to a chunked
// response, the body's chunks are followed to its trailer section, whose
// lines with such fields go too. Everything else passes unchanged, and a
// head without a Trailer field, nearly all, is not even copied.
//
// A head starts with the first read after a write (fasthttp's client
// neither pipelines nor reads before its request is written) and after an
// interim 1xx head; it ends at its blank line. A response without a body
// (to HEAD, 204, 304) is followed by nothing before the next write, which
// starts a head again: so the chunks are followed without knowing the
// request. What does not parse is passed on as it is, for fasthttp to fail.
//
// The chunks of a chunked body passed on unfiltered are followed too, in
// place, to count those received whole (chunkcount.go).
type trailerFieldConn struct {
	net.Conn
	mode    trailerMode
	bol     bool   // at the beginning of a line (head and trailer section)
	status  bool   // the status line is next
	interim bool   // the head is a 1xx but 101: another head follows
	chunked bool   // the head has Transfer-Encoding: chunked
	dropped bool   // names were taken out of the head's Trailer field
	left    int    // chunk data bytes (and their CRLF) still to pass
	held    []byte // the start of a line held until it ends
	out     []byte // filtered bytes not yet returned
	err     error  // the read error to return once out is empty
	// chunks follows a chunked body passed on (chunkcount.go); it is the
	// IdleConn's, where ConnOf finds it.
	chunks *chunkCount
}

type trailerMode uint8

const (
	modeHead    trailerMode = iota // a response head
	modeSize                       // a chunk-size line
	modeData                       // chunk data and its CRLF
	modeTrailer                    // the trailer section
	modeOff                        // the rest, passed unread
)

// maxHeldLine bounds a line held back: the upstream read buffer.
const maxHeldLine = 16 << 10

func NewTrailerFieldConn(c net.Conn) *trailerFieldConn {
	t := &trailerFieldConn{Conn: c}
	if ic, ok := c.(*IdleConn); ok {
		t.chunks = &ic.chunks
	} else {
		t.chunks = new(chunkCount) // followed for nobody: a handshake's
	}
	t.startHead()
	return t
}

func (c *trailerFieldConn) startHead() {
	c.mode, c.bol, c.status, c.chunked, c.dropped = modeHead, true, true, false, false
	c.held = c.held[:0]
	c.chunks.reset()
}

func (c *trailerFieldConn) Write(b []byte) (int, error) {
	if c.mode != modeHead || !c.status || !c.bol {
		c.startHead()
	}
	return c.Conn.Write(b)
}

func (c *trailerFieldConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil // nothing could be returned: do not loop reading
	}
	for len(c.out) == 0 {
		if c.err != nil {
			err := c.err
			c.err = nil
			return 0, err
		}
		if c.mode == modeOff {
			n, err := c.Conn.Read(b)
			if c.chunks.on {
				c.chunks.scan(b[:n])
			}
			return n, err
		}
		n, err := c.Conn.Read(b)
		if c.mode == modeHead && len(c.held) == 0 && c.plain(b[:n]) {
			return n, err
		}
		c.filter(b[:n])
		if err != nil {
			// The message ended early: give back what was held as it was.
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
// interim one), has no Trailer field, and no earlier read of the head had
// one to rewrite. Then what follows is not read, but for a chunked body's
// framing (chunks).
func (c *trailerFieldConn) plain(p []byte) bool {
	if !c.bol || c.dropped {
		return false
	}
	status, interim, chunked := c.status, c.interim, c.chunked
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
			c.mode = modeOff
			if chunked {
				c.chunks.start()
				c.chunks.scan(p[i+1:])
			}
			return true
		case isTrailerField(line):
			return false
		case !chunked && line[0]|0x20 == 't' && isChunkedCoding(bytes.TrimSuffix(line, []byte{'\r'})):
			chunked = true
		}
		p = p[i+1:]
	}
	return false
}

// filter follows p into out: lines of heads and trailer sections one by
// one, held back until they end, chunk data counted through.
func (c *trailerFieldConn) filter(p []byte) {
	for len(p) > 0 {
		switch c.mode {
		case modeOff:
			if c.chunks.on {
				c.chunks.scan(p)
			}
			c.out = append(c.out, p...)
			return
		case modeData:
			n := min(len(p), c.left)
			c.out = append(c.out, p[:n]...)
			p, c.left = p[n:], c.left-n
			if c.left == 0 {
				c.mode, c.bol = modeSize, true
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if c.bol || len(c.held) > 0 {
				c.held = append(c.held, p...)
			} else {
				c.out = append(c.out, p...)
			}
			if len(c.held) > maxHeldLine {
				// Longer than anything fasthttp reads: let it fail there.
				c.out = append(c.out, c.held...)
				c.held, c.bol = c.held[:0], false
				if c.mode != modeHead {
					c.mode = modeOff
				}
			}
			return
		}
		line := p[:i+1]
		p = p[i+1:]
		if len(c.held) > 0 {
			line = append(c.held, line...)
			c.held = c.held[:0]
		} else if !c.bol {
			c.out = append(c.out, line...)
			c.bol = true
			continue
		}
		c.line(line)
	}
}

// line handles one whole line, its LF included.
func (c *trailerFieldConn) line(line []byte) {
	body := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
	switch c.mode {
	case modeSize:
		c.out = append(c.out, line...)
		size, ok := chunkSize(body)
		switch {
		case !ok:
			c.mode = modeOff
		case size == 0:
			c.mode = modeTrailer
		default:
			c.mode, c.left = modeData, size+2 // the data, then its CRLF
		}
		return
	case modeTrailer:
		if len(body) == 0 {
			c.out = append(c.out, line...)
			c.mode = modeOff
			return
		}
		// RFC 9110 §6.5.1: the field may not be in a trailer section.
		if k, _, ok := bytes.Cut(body, []byte{':'}); ok && !TrailerName(bytes.TrimRight(k, " \t"), nil) {
			return
		}
		c.out = append(c.out, line...)
		return
	}
	switch {
	case c.status:
		c.interim = isInterim(body)
		c.status = false
		c.out = append(c.out, line...)
	case len(body) == 0:
		c.out = append(c.out, line...)
		switch {
		case c.interim:
			c.status, c.chunked, c.dropped = true, false, false
		case c.chunked && c.dropped:
			// Filtered, not counted: no chunk is packed with the next.
			c.mode = modeSize
		default:
			c.mode = modeOff
			if c.chunked {
				c.chunks.start()
			}
		}
	case isTrailerField(body):
		if refusedTrailerName(body) {
			c.out = appendTrailerField(c.out, body)
			c.dropped = true
		} else {
			c.out = append(c.out, line...)
		}
	default:
		if isChunkedCoding(body) {
			c.chunked = true
		}
		c.out = append(c.out, line...)
	}
}

// chunkSize parses the size of a chunk-size line (RFC 9112 §7.1):
// hexadecimal digits, then optional extensions.
func chunkSize(line []byte) (int, bool) {
	n, digits := 0, 0
	for _, ch := range line {
		var d int
		switch {
		case '0' <= ch && ch <= '9':
			d = int(ch - '0')
		case 'a' <= ch|0x20 && ch|0x20 <= 'f':
			d = int(ch|0x20-'a') + 10
		default:
			return n, digits > 0 && (ch == ';' || ch == ' ' || ch == '\t')
		}
		if digits++; digits > 15 {
			return 0, false // larger than fasthttp takes
		}
		n = n<<4 | d
	}
	return n, digits > 0
}

// isChunkedCoding reports whether a header line is Transfer-Encoding:
// chunked, the one coding fasthttp reads.
func isChunkedCoding(line []byte) bool {
	name, v, ok := bytes.Cut(line, []byte{':'})
	return ok && fields.IsTransferEncoding(bytes.TrimRight(name, " \t")) &&
		bytes.EqualFold(bytes.Trim(v, " \t"), []byte("chunked"))
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

// refusedTrailerName reports whether a Trailer field line names a field
// that may not be a trailer field.
func refusedTrailerName(line []byte) bool {
	_, list, _ := bytes.Cut(line, []byte{':'})
	for len(list) > 0 {
		var el []byte
		el, list, _ = bytes.Cut(list, []byte{','})
		if el = bytes.Trim(el, " \t"); len(el) > 0 && !TrailerName(el, nil) {
			return true
		}
	}
	return false
}

// appendTrailerField appends the Trailer field line with only the names
// that may be trailer fields, or nothing if none is left.
func appendTrailerField(dst, line []byte) []byte {
	name, list, _ := bytes.Cut(line, []byte{':'})
	start := len(dst)
	dst = append(append(dst, name...), ':')
	kept := 0
	for len(list) > 0 {
		var el []byte
		el, list, _ = bytes.Cut(list, []byte{','})
		if el = bytes.Trim(el, " \t"); len(el) == 0 || !TrailerName(el, nil) {
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

// TrailerName reports whether name may be announced and sent as a trailer
// field: not hop-by-hop, and accepted by fasthttp, whose list of fields
// not allowed in trailers (isBadTrailer) is the one its parser enforces.
func TrailerName(name, listed []byte) bool {
	if fields.IsHopByHop(name, listed) {
		return false
	}
	var h fasthttp.ResponseHeader
	return h.AddTrailerBytes(name) == nil
}
