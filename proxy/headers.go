package proxy

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 §7.6.1, and httputil's list), so a proxy must not forward
// them. Content-Length and Transfer-Encoding are left to fasthttp, which
// re-frames each body itself. Trailer, on httputil's list, is end-to-end
// (RFC 9110 §6.6.2): trailers.go passes it on with the trailer fields.
var hopByHop = [][]byte{
	[]byte("Connection"),
	[]byte("Proxy-Connection"),
	[]byte("Keep-Alive"),
	[]byte("Proxy-Authenticate"),
	[]byte("Proxy-Authorization"),
	[]byte("Te"),
	[]byte("Upgrade"),
}

var hTrailer = []byte(fasthttp.HeaderTrailer)

var (
	hXForwardedFor   = []byte("X-Forwarded-For")
	hXForwardedProto = []byte("X-Forwarded-Proto")
	hXForwardedHost  = []byte("X-Forwarded-Host")
	protoHTTP        = []byte("http")
)

// prepareRequest turns the client's request into the upstream's: it drops
// hop-by-hop headers and those the client listed in Connection, and sets
// X-Forwarded-For/-Proto/-Host (issue 2), after normalizeRequest has made
// Host agree with the target. The path is forwarded byte for byte.
func prepareRequest(ctx *fasthttp.RequestCtx, trust bool) {
	normalizeRequest(&ctx.Request)
	h := &ctx.Request.Header
	// fasthttp parsed the request URI and, on writing, would rebuild the
	// Host header from it, lower-cased: keep the client's Host as sent.
	ctx.Request.UseHostHeader = true
	h.ResetConnectionClose()
	// Never let fasthttp add a Content-Type the client did not send.
	h.SetNoDefaultContentType(true)
	var listed []byte
	for _, v := range h.PeekAll(fasthttp.HeaderConnection) {
		listed = append(append(listed, v...), ',')
	}
	stripConnectionListed(listed, h.DelBytes)
	for _, k := range hopByHop {
		h.DelBytes(k)
	}
	if hasUnderscoreName(h.RawHeaders()) {
		dropUnderscoreNames(h)
	}
	if _, hasBody := requestBody(ctx); !hasBody {
		// No body: drop the empty stream, so that fasthttp may resend a
		// bodiless GET on a keep-alive connection the upstream just closed.
		ctx.Request.ResetBody()
	}
	prepareRequestTrailers(&ctx.Request, listed)

	var buf [64]byte
	ip := appendRemoteIP(buf[:0], ctx.RemoteAddr())
	// Exactly one of each X-Forwarded-* goes upstream: repeated lines are
	// where a client hides a spoofed value from a proxy that reads one.
	if trust {
		var xff []byte
		for _, v := range h.PeekAll(string(hXForwardedFor)) {
			xff = append(append(xff, v...), ", "...)
		}
		xff = append(xff, ip...)
		proto := append([]byte(nil), h.PeekBytes(hXForwardedProto)...)
		fwdHost := append([]byte(nil), h.PeekBytes(hXForwardedHost)...)
		h.DelBytes(hXForwardedFor)
		h.DelBytes(hXForwardedProto)
		h.DelBytes(hXForwardedHost)
		h.SetBytesKV(hXForwardedFor, xff)
		if len(proto) == 0 {
			proto = protoHTTP
		}
		if len(fwdHost) == 0 {
			fwdHost = h.Host()
		}
		h.SetBytesKV(hXForwardedProto, proto)
		h.SetBytesKV(hXForwardedHost, fwdHost)
		return
	}
	h.DelBytes(hXForwardedFor)
	h.DelBytes(hXForwardedProto)
	h.DelBytes(hXForwardedHost)
	h.SetBytesKV(hXForwardedFor, ip)
	h.SetBytesKV(hXForwardedProto, protoHTTP)
	h.SetBytesKV(hXForwardedHost, h.Host())
}

// isHopByHop reports whether header k must not be forwarded: a standard
// hop-by-hop header or one named in the Connection value listed.
func isHopByHop(k, listed []byte) bool {
	for _, h := range hopByHop {
		if bytes.EqualFold(k, h) {
			return true
		}
	}
	for len(listed) > 0 {
		var tok []byte
		tok, listed, _ = bytes.Cut(listed, []byte{','})
		if bytes.EqualFold(bytes.TrimSpace(tok), k) {
			return true
		}
	}
	return false
}

var (
	hContentLength    = []byte("Content-Length")
	hTransferEncoding = []byte("Transfer-Encoding")
)

// isFraming reports whether k is a body-framing header, which fasthttp
// sets itself for each side.
func isFraming(k []byte) bool {
	return bytes.EqualFold(k, hContentLength) || bytes.EqualFold(k, hTransferEncoding)
}

// stripConnectionListed deletes each header named in a Connection value
// ("keep-alive, X-Secret"): the sender marked them hop-by-hop. Framing
// fields and Host are never taken: a client must not be able to make the
// proxy drop the body's length or the route.
func stripConnectionListed(v []byte, del func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte{','})
		if tok = bytes.TrimSpace(tok); len(tok) > 0 && !isFraming(tok) && !bytes.EqualFold(tok, hHost) {
			del(tok)
		}
	}
}

var hHost = []byte("Host")

func appendRemoteIP(dst []byte, a net.Addr) []byte {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap().AppendTo(dst)
		}
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return append(dst, a.String()...)
	}
	return append(dst, host...)
}

// connectionListed returns the options of every Connection line of h as
// one list (RFC 9110 §7.6.1: the field may be split over lines).
func connectionListed(h *fasthttp.ResponseHeader) []byte {
	vals := h.PeekAll(fasthttp.HeaderConnection)
	switch len(vals) {
	case 0:
		return nil
	case 1:
		return vals[0]
	}
	return bytes.Join(vals, []byte(","))
}
