package proxy

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/fields"
	"github.com/agimo/agimo/route"
)

var hTrailer = []byte(fasthttp.HeaderTrailer)

var (
	hXForwardedFor   = []byte("X-Forwarded-For")
	hXForwardedProto = []byte("X-Forwarded-Proto")
	hXForwardedHost  = []byte("X-Forwarded-Host")
	protoHTTP        = []byte("http")
	protoHTTPS       = []byte("https")
)

// prepareRequest turns the client's request into the upstream's: it drops
// hop-by-hop headers and those the client listed in Connection, and sets
// X-Forwarded-For/-Proto/-Host (issue 2), after normalizeRequest has made
// Host agree with the target. The path is forwarded byte for byte, unless
// r's filters (filterRequest) rewrite it; they apply last, so that a
// header modifier may also set the X-Forwarded-* fields.
func prepareRequest(ctx *fasthttp.RequestCtx, r *route.Route, trust bool) {
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
	fields.StripConnectionListed(listed, h.DelBytes)
	fields.DeleteHopByHop(h.DelBytes)
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
	scheme := protoHTTP
	if overTLS(ctx.Conn()) {
		scheme = protoHTTPS
	}
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
			proto = scheme
		}
		if len(fwdHost) == 0 {
			fwdHost = h.Host()
		}
		h.SetBytesKV(hXForwardedProto, proto)
		h.SetBytesKV(hXForwardedHost, fwdHost)
	} else {
		h.DelBytes(hXForwardedFor)
		h.DelBytes(hXForwardedProto)
		h.DelBytes(hXForwardedHost)
		h.SetBytesKV(hXForwardedFor, ip)
		h.SetBytesKV(hXForwardedProto, scheme)
		h.SetBytesKV(hXForwardedHost, h.Host())
	}
	filterRequest(&ctx.Request, r)
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
