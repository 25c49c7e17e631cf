package upstream

// chunkCount follows the framing of a chunked response body (RFC 9112
// §7.1) in the bytes the connection hands to fasthttp's reader, to count
// the data of the chunks received whole: size line, data and the CRLF
// after it. fasthttp's chunk reader returns one chunk per read and does not
// say what its buffer holds; with this count the proxy knows that reading
// up to that many data bytes cannot wait on the upstream, and packs every
// whole chunk already received into one write to the client
// (ChunkReceived), as nginx writes whatever it has read. A chunk not yet
// whole is never waited for: its bytes go out as fasthttp returns them.
//
// The bytes are followed in place (nothing is copied), one byte at a time
// only on size lines. Following stops at the last chunk (the trailer
// section is left to fasthttp) and at anything fasthttp would refuse: the
// chunks counted before that are still whole, and fasthttp fails the rest.
type chunkCount struct {
	on     bool // following a chunked body
	ext    bool // past the size's digits, up to the line's end
	digits int
	size   int // of the chunk whose size line is being read, or whose data
	left   int // data and CRLF still to come of the current chunk
	// whole counts the data bytes of the chunks received whole since the
	// body started.
	whole int
}

// start begins following a chunked body whose first byte comes next.
func (c *chunkCount) start() { *c = chunkCount{on: true} }

// reset forgets the body: a new response starts.
func (c *chunkCount) reset() { *c = chunkCount{} }

// maxSizeDigits is the longest chunk size fasthttp reads (its readHexInt).
const maxSizeDigits = 15

// scan follows p, the next bytes of the body.
func (c *chunkCount) scan(p []byte) {
	for c.on && len(p) > 0 {
		if c.left > 0 {
			k := min(c.left, len(p))
			p, c.left = p[k:], c.left-k
			if c.left == 0 {
				c.whole += c.size
				c.size, c.digits, c.ext = 0, 0, false
			}
			continue
		}
		ch := p[0]
		p = p[1:]
		switch d := hexDigit(ch); {
		case ch == '\n':
			if c.size == 0 {
				// The last chunk (or no size at all): stop here.
				c.on = false
				return
			}
			c.left = c.size + 2 // the data, then its CRLF
		case c.ext:
			// Extensions, whitespace, the CR: fasthttp checks them.
		case d >= 0:
			if c.digits++; c.digits > maxSizeDigits {
				c.on = false
				return
			}
			c.size = c.size<<4 | d
		default:
			c.ext = true
		}
	}
}

func hexDigit(ch byte) int {
	switch {
	case '0' <= ch && ch <= '9':
		return int(ch - '0')
	case 'a' <= ch|0x20 && ch|0x20 <= 'f':
		return int(ch|0x20-'a') + 10
	}
	return -1
}

// received reports whether the data bytes of the body past its first read
// ones include a whole chunk's received already.
func (c *chunkCount) received(read int) bool { return c.whole > read }
