package route

import (
	"cmp"
	"slices"
)

// The rule model (issue 12): a Table maps each host to its rules in the
// order they are tried; the first rule whose Match accepts the request
// names its Route. The TOML config makes one rule per (entry, path);
// routes from the cluster (Ingress, Gateway API HTTPRoute and GRPCRoute)
// are to add their own rules to the same table, with the extension
// points named below.

// Match is what a request must have for a rule to apply.
//
// Extension points, each to be checked in Accepts and ordered in compare:
//   - Method string: HTTPRoute's method match.
//   - Headers []HeaderMatch, Query []QueryMatch: HTTPRoute's header and
//     query matches (all must hold); GRPCRoute's service/method become a
//     PathExact or PathPrefix on "/pkg.Service/Method" plus headers.
//
// A match that reads more than the path will need the request's method
// and fields: Lookup's path argument then becomes a small request view
// that each front end fills without allocating.
type Match struct {
	// PathPrefix matches the raw request path on segment boundaries:
	// "/api" matches "/api", "/api/" and "/api/x", not "/apix". It is kept
	// without a trailing "/" (conf normalises "/api/" to "/api"), except
	// "/", which matches every path.
	PathPrefix string
	// PathExact, if set, matches only this raw path, byte for byte
	// (Ingress's pathType Exact); PathPrefix is then unused.
	PathExact string
}

// Accepts reports whether a request with this raw path (Path: as sent,
// without the query, not decoded) satisfies m. Comparison is byte for
// byte: "/api%2Fx" is not "/api/x", as probe paths (cold.go) are not.
func (m *Match) Accepts(path []byte) bool {
	if m.PathExact != "" {
		return string(path) == m.PathExact
	}
	p := m.PathPrefix
	if p == "/" {
		return true
	}
	return len(path) >= len(p) && string(path[:len(p)]) == p &&
		(len(path) == len(p) || path[len(p)] == '/')
}

// compare orders the rules of one host: negative if a is tried before b.
// Today an exact path first, then the longer prefix. Gateway API's order (HTTPRoute,
// "HTTPRouteRule" precedence) slots in here, each criterion breaking the
// previous one's ties: exact path before any prefix, then the longest
// prefix, then a method match, then the most header matches, then the
// most query matches; the remaining ties go to the oldest route object,
// then to namespace/name order, which the builder of the rules resolves by
// the order it adds them (the sort is stable).
func compare(a, b *Match) int {
	if ae, be := a.PathExact != "", b.PathExact != ""; ae != be {
		if ae {
			return -1
		}
		return 1
	}
	return cmp.Compare(len(b.PathPrefix), len(a.PathPrefix))
}

// Rule sends the requests its Match accepts to its Route.
//
// Extension points: Backends []Backend{Route, Weight} for weighted
// backendRefs (the Route then picked per request by weight), and Filters
// (request and response header modifiers, redirect, URL rewrite) for the
// front ends to apply once the rule is chosen.
type Rule struct {
	Match Match
	Route *Route
}

// sortRules puts a host's rules in the order Lookup tries them.
func sortRules(rules []Rule) {
	slices.SortStableFunc(rules, func(a, b Rule) int { return compare(&a.Match, &b.Match) })
}

// first returns the Route of the first of rules that accepts path.
func first(rules []Rule, path []byte) *Route {
	for i := range rules {
		if rules[i].Match.Accepts(path) {
			return rules[i].Route
		}
	}
	return nil
}
