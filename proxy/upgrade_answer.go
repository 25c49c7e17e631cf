package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/agimo/agimo/fields"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/tunnel"
	"github.com/agimo/agimo/upstream"
)

// What the upgrade path writes to a hijacked client, where fasthttp no
// longer writes for it: Agimo's own answers, an upstream's refusal relayed,
// the 101 serialised header by header; and the pooled readers of upstream
// handshake heads.

// writeAnswer writes one of Agimo's own responses to a hijacked client,
// then lingers so that it is read (see tunnel.Linger).
func writeAnswer(client net.Conn, resp *fasthttp.Response, timeout time.Duration) {
	resp.SetConnectionClose()
	bw := bufio.NewWriterSize(upstream.WithIdleTimeout(client, timeout), 1024)
	if resp.Write(bw) == nil && bw.Flush() == nil {
		tunnel.Linger(client)
	}
}

// relayRefusal relays an upstream's answer other than 101 to the client as
// a plain response with Connection: close, its body streamed with the
// same rules as forward (hop-by-hop headers dropped, a body of unknown
// length chunked).
func (p *Proxy) relayRefusal(client net.Conn, r *route.Route, resp *fasthttp.Response) error {
	h := &resp.Header
	head := appendStatusAndHeaders(make([]byte, 0, 512), h)
	n := h.ContentLength()
	switch {
	case !bodyAllowed(h.StatusCode()):
		n = 0
	case n >= 0:
		head = append(head, "Content-Length: "...)
		head = strconv.AppendInt(head, int64(n), 10)
		head = append(head, "\r\n"...)
	default:
		head = append(head, "Transfer-Encoding: chunked\r\n"...)
	}
	head = append(head, "Connection: close\r\n\r\n"...)

	bw := bufio.NewWriterSize(upstream.WithIdleTimeout(client, r.UpstreamTimeout), 4096)
	bw.Write(head)
	var err error
	switch {
	case n > 0:
		_, err = io.CopyN(bw, resp.BodyStream(), int64(n))
	case n < 0:
		cw := httputil.NewChunkedWriter(bw)
		if _, err = io.Copy(cw, resp.BodyStream()); err == nil {
			err = cw.Close() // the last chunk, then the trailer section
			bw.Write(appendTrailerSection(nil, h.TrailerHeader(), connectionListed(h)))
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	p.log.Debug().Str("host", r.Host).Int("status", h.StatusCode()).AnErr("error", err).Msg("upgrade refused by upstream")
	return err
}

// appendSwitchHead serialises the upstream's 101 for the client: its own
// headers minus hop-by-hop ones, then Connection and Upgrade put back,
// Upgrade with the upstream's tokens.
func appendSwitchHead(dst []byte, h *fasthttp.ResponseHeader, proto []byte) []byte {
	dst = appendStatusAndHeaders(dst, h)
	dst = append(dst, "Connection: Upgrade\r\nUpgrade: "...)
	dst = append(dst, proto...)
	return append(dst, "\r\n\r\n"...)
}

// appendStatusAndHeaders appends the status line and the end-to-end
// headers of h: not hop-by-hop ones (RFC 9110 §7.6.1) nor the framing
// ones, which the caller writes. Like copyResponseHead, it copies header
// by header: fasthttp's serialiser would add a Date the upstream did not
// send.
func appendStatusAndHeaders(dst []byte, h *fasthttp.ResponseHeader) []byte {
	code := h.StatusCode()
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	if msg := h.StatusMessage(); len(msg) > 0 {
		dst = append(dst, msg...)
	} else {
		dst = append(dst, fasthttp.StatusMessage(code)...)
	}
	dst = append(dst, "\r\n"...)
	listed := connectionListed(h)
	for k, v := range h.All() {
		if fields.IsFraming(k) || fields.IsHopByHop(k, listed) || bytes.EqualFold(k, hTrailer) {
			continue
		}
		dst = append(dst, k...)
		dst = append(dst, ": "...)
		dst = append(dst, v...)
		dst = append(dst, "\r\n"...)
	}
	return appendTrailerAnnouncement(dst, h, listed)
}

// writeWithin writes b to c, failing if c takes longer than timeout.
func writeWithin(c net.Conn, b []byte, timeout time.Duration) error {
	if err := c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write(b); err != nil {
		return err
	}
	return c.SetWriteDeadline(time.Time{})
}

// headReaders recycles the readers of upstream response heads, which are
// needed only during the handshake. Their size bounds a head as the
// forward path's ReadBufferSize does.
var headReaders sync.Pool

// awaitAnswer waits until up has something to read (bytes, an end of
// stream or an error), within timeout, holding no buffer meanwhile: a
// crowd of handshakes waiting for their upstreams then takes no head
// reader each, only those whose answer has come do. up is the raw
// connection dialled; one that is not a syscall.Conn is read at once.
// Hand-written, like tunnel's readRaw, because net.Conn.Read needs its
// buffer before it knows whether it will wait.
func awaitAnswer(up net.Conn, timeout time.Duration) error {
	sc, ok := up.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	if err := up.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		for {
			// MSG_PEEK leaves the byte for the head reader.
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err != unix.EINTR {
				return err != unix.EAGAIN // false: wait, then try again
			}
		}
	})
}

func acquireHeadReader(c net.Conn) *bufio.Reader {
	if br, ok := headReaders.Get().(*bufio.Reader); ok {
		br.Reset(c)
		return br
	}
	return bufio.NewReaderSize(c, 16<<10)
}

func releaseHeadReader(br *bufio.Reader) {
	br.Reset(nil) // drop the connection
	headReaders.Put(br)
}

// peekBuffered returns the bytes br holds, valid until its next read.
func peekBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}
