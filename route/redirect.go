package route

import (
	"bytes"
	"net"
)

// HTTPSLocation is the https URL of a plain-HTTP request for
// https_redirect: the host the request was routed by, without its port
// (the TLS port is reached on 443, the chart's Service port), and the
// target's path and query as sent (RFC 9110 §15.4.9, 308 keeps the method
// and body).
func HTTPSLocation(host, uri []byte) []byte {
	h := host
	if hp, _, err := net.SplitHostPort(string(host)); err == nil {
		h = []byte(hp)
		if bytes.IndexByte(h, ':') >= 0 {
			h = append(append([]byte{'['}, h...), ']') // IPv6 literal
		}
	}
	if IsAbsoluteForm(uri) {
		_, rest, _ := bytes.Cut(uri, []byte("://"))
		if i := bytes.IndexAny(rest, "/?"); i >= 0 {
			uri = rest[i:]
		} else {
			uri = []byte("/")
		}
	}
	if len(uri) == 0 || uri[0] != '/' {
		uri = append([]byte{'/'}, uri...)
	}
	out := make([]byte, 0, len("https://")+len(h)+len(uri))
	return append(append(append(out, "https://"...), h...), uri...)
}
