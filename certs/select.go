package certs

import (
	"crypto/tls"
	"strings"
)

// snapshot is the pool at one moment; never modified once published.
//
// Go's crypto/tls can pick among Config.Certificates itself, but it takes
// the first certificate in order that covers the name, so a wildcard
// listed before an exact certificate would win; and it walks the whole
// list on every handshake. Issue 11 wants the exact name first, so the
// snapshot indexes names once, and a handshake costs two map lookups.
type snapshot struct {
	first      *tls.Certificate            // the default, nil if none is loaded
	exact      map[string]*tls.Certificate // DNS SAN → its first certificate
	wildcard   map[string]*tls.Certificate // "example.com" of "*.example.com" → its first certificate
	configured int                         // sources configured, loaded or not
}

// buildSnapshot indexes certs, which are in configured order: when
// several certificates cover a name, the first one configured wins.
func buildSnapshot(certs []*tls.Certificate, configured int) *snapshot {
	s := &snapshot{exact: make(map[string]*tls.Certificate), wildcard: make(map[string]*tls.Certificate), configured: configured}
	for _, c := range certs {
		if s.first == nil {
			s.first = c
		}
		for _, n := range c.Leaf.DNSNames {
			n = normalize(n)
			// RFC 6125 §6.4.3: a wildcard is the whole left-most label
			// and stands for exactly one label. Partial-label wildcards
			// ("w*.example.com"), which a client may refuse and public
			// CAs no longer issue, are not indexed.
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				if !strings.Contains(rest, "*") && s.wildcard[rest] == nil {
					s.wildcard[rest] = c
				}
				continue
			}
			if !strings.Contains(n, "*") && s.exact[n] == nil {
				s.exact[n] = c
			}
		}
	}
	return s
}

// pick returns the certificate for a ClientHello's server name: the
// certificate with that exact DNS name, else one whose wildcard covers
// it, else (and for a ClientHello without SNI, RFC 6066 §3) the first
// configured. nil only if no certificate is loaded.
func (s *snapshot) pick(serverName string) *tls.Certificate {
	if serverName != "" {
		n := normalize(serverName)
		if c := s.exact[n]; c != nil {
			return c
		}
		if label, parent, ok := strings.Cut(n, "."); ok && label != "" && parent != "" {
			if c := s.wildcard[parent]; c != nil {
				return c
			}
		}
	}
	return s.first
}

// normalize makes DNS names comparable: case-insensitive (RFC 4343) and
// without the trailing dot of an absolute name (RFC 6066 §3 forbids it in
// SNI, but clients send it).
func normalize(n string) string {
	return strings.ToLower(strings.TrimSuffix(n, "."))
}
