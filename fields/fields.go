// Package fields holds the rules of HTTP fields that every hop of Agimo
// applies, whatever the protocol on either side: which fields describe a
// connection rather than the message (RFC 9110 §7.6.1) and must not be
// forwarded, and which frame a body, which each side sets for itself.
package fields

import "bytes"

// hopByHop are the fields that describe one connection, not the message
// (RFC 9110 §7.6.1, and httputil's list), so a proxy must not forward
// them. Content-Length and Transfer-Encoding are left to the server
// library, which re-frames each body itself. Trailer, on httputil's list,
// is end-to-end (RFC 9110 §6.6.2) and passes on with the trailer fields.
var hopByHop = [][]byte{
	[]byte("Connection"),
	[]byte("Proxy-Connection"),
	[]byte("Keep-Alive"),
	[]byte("Proxy-Authenticate"),
	[]byte("Proxy-Authorization"),
	[]byte("Te"),
	[]byte("Upgrade"),
}

// DeleteHopByHop deletes the standard hop-by-hop fields with del.
func DeleteHopByHop(del func([]byte)) {
	for _, k := range hopByHop {
		del(k)
	}
}

// IsHopByHop reports whether field k must not be forwarded: a standard
// hop-by-hop field or one named in the Connection value listed.
func IsHopByHop(k, listed []byte) bool {
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
	hHost             = []byte("Host")
)

// IsFraming reports whether k is a body-framing field, which each side
// sets itself.
func IsFraming(k []byte) bool {
	return bytes.EqualFold(k, hContentLength) || bytes.EqualFold(k, hTransferEncoding)
}

// IsContentLength reports whether k is Content-Length.
func IsContentLength(k []byte) bool { return bytes.EqualFold(k, hContentLength) }

// IsTransferEncoding reports whether k is Transfer-Encoding.
func IsTransferEncoding(k []byte) bool { return bytes.EqualFold(k, hTransferEncoding) }

// StripConnectionListed deletes each field named in a Connection value
// ("keep-alive, X-Secret"): the sender marked them hop-by-hop. Framing
// fields and Host are never taken: a client must not be able to make the
// proxy drop the body's length or the route.
func StripConnectionListed(v []byte, del func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte{','})
		if tok = bytes.TrimSpace(tok); len(tok) > 0 && !IsFraming(tok) && !bytes.EqualFold(tok, hHost) {
			del(tok)
		}
	}
}
