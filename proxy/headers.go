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
// re-frames each body itself.
var hopByHop = [][]byte{
	[]byte("Connection"),
	[]byte("Proxy-Connection"),
	[]byte("Keep-Alive"),
	[]byte("Proxy-Authenticate"),
	[]byte("Proxy-Authorization"),
	[]byte("Te"),
	[]byte("Trailer"),
	[]byte("Upgrade"),
}

var (
	hXForwardedFor   = []byte("X-Forwarded-For")
	hXForwardedProto = []byte("X-Forwarded-Proto")
	hXForwardedHost  = []byte("X-Forwarded-Host")
	protoHTTP        = []byte("http")
)

// prepareRequest turns the client's request into the upstream's: it drops
// hop-by-hop headers and those the client listed in Connection, and sets
// X-Forwarded-For/-Proto/-Host (issue 2). The request line is untouched:
// the path is forwarded byte for byte.
func prepareRequest(ctx *fasthttp.RequestCtx, trust bool) {
	h := &ctx.Request.Header
	// fasthttp parsed the request URI and, on writing, would rebuild the
	// Host header from it, lower-cased: keep the client's Host as sent.
	ctx.Request.UseHostHeader = true
	h.ResetConnectionClose()
	stripConnectionListed(h.Peek(fasthttp.HeaderConnection), h.DelBytes)
	for _, k := range hopByHop {
		h.DelBytes(k)
	}
	if _, hasBody := requestBody(ctx); !hasBody {
		// No body: drop the empty stream, so that fasthttp may resend a
		// bodiless GET on a keep-alive connection the upstream just closed.
		ctx.Request.ResetBody()
	}

	var buf [64]byte
	ip := appendRemoteIP(buf[:0], ctx.RemoteAddr())
	if prior := h.PeekBytes(hXForwardedFor); trust && len(prior) > 0 {
		v := make([]byte, 0, len(prior)+2+len(ip))
		v = append(append(append(v, prior...), ", "...), ip...)
		h.SetBytesKV(hXForwardedFor, v)
	} else {
		h.SetBytesKV(hXForwardedFor, ip)
	}
	if !trust || len(h.PeekBytes(hXForwardedProto)) == 0 {
		h.SetBytesKV(hXForwardedProto, protoHTTP)
	}
	if !trust || len(h.PeekBytes(hXForwardedHost)) == 0 {
		h.SetBytesKV(hXForwardedHost, h.Host())
	}
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
// ("keep-alive, X-Secret"): the sender marked them hop-by-hop.
func stripConnectionListed(v []byte, del func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte{','})
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			del(tok)
		}
	}
}

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

// stripResponse drops hop-by-hop headers from a response head in place
// (the upgrade path relays a refused upgrade's head this way).
func stripResponse(h *fasthttp.ResponseHeader) {
	stripConnectionListed(h.Peek(fasthttp.HeaderConnection), h.DelBytes)
	for _, k := range hopByHop {
		h.DelBytes(k)
	}
}
