package gateway

import (
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/agimo/agimo/conf"
)

// hostMatches reports whether the name a (exact, or "*.suffix") falls
// within the name b, by Gateway API's rule: "*.example.com" matches every
// name ending in ".example.com" — "a.example.com" and "a.b.example.com",
// not "example.com" (Hostname; HTTPRoute spec.hostnames).
func hostMatches(a, b string) bool {
	if a == b {
		return true
	}
	suffix, wild := strings.CutPrefix(b, "*")
	return wild && strings.HasSuffix(a, suffix) && len(a) > len(suffix)
}

// intersect returns the hosts a route serves through a listener: its
// hostnames that match the listener's hostname, the listener's hostname
// where it is the narrower of the two (a route's "*.example.com" through
// a listener of "a.example.com" is "a.example.com"), every route hostname
// when the listener has none, and the listener's when the route has none
// (HTTPRoute spec.hostnames). A listener and a route without hostnames
// give the catch-all host. Nil: no match.
func intersect(listener *gwv1.Hostname, route []gwv1.Hostname) []string {
	l := ""
	if listener != nil {
		l = strings.ToLower(string(*listener))
	}
	if len(route) == 0 {
		if l == "" {
			return []string{conf.CatchAllHost}
		}
		return []string{l}
	}
	var out []string
	for _, h := range route {
		r := strings.ToLower(string(h))
		switch {
		case l == "" || hostMatches(r, l):
			out = append(out, r)
		case hostMatches(l, r):
			out = append(out, l)
		}
	}
	return out
}
