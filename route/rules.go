package route

import (
	"bytes"
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/agimo/agimo/conf"
)

// The rule model (issue 12): a Table maps each host to its rules in the
// order they are tried; the first rule whose Match accepts the request
// names its Route. The TOML config makes one rule per (entry, path);
// routes from the cluster (Ingress, Gateway API HTTPRoute and GRPCRoute)
// add their own rules to the same table, with a method, header and query
// match, weighted backends and filters (conf.Extras).

// Request is what a Match reads of a request beyond its host and path.
// Each front end implements it over its own request without copying (a
// named pointer type converts to it without allocating); Lookup consults
// it only for a rule that has such conditions, so a host whose rules are
// paths alone never calls it.
type Request interface {
	// Method is the request method as sent.
	Method() []byte
	// Header returns the first value of the field name (any case: names
	// are given canonical, as http.CanonicalHeaderKey makes them) and
	// whether the request has the field.
	Header(name string) ([]byte, bool)
	// RawQuery is the request target's query as sent, without "?".
	RawQuery() []byte
}

// Match is what a request must have for a rule to apply: its path, and
// each of Method, Headers and Query that is set (HTTPRoute's matches[];
// GRPCRoute's service/method become a path on "/pkg.Service/Method").
type Match struct {
	// PathPrefix matches the raw request path on segment boundaries:
	// "/api" matches "/api", "/api/" and "/api/x", not "/apix". It is kept
	// without a trailing "/" (conf normalises "/api/" to "/api"), except
	// "/", which matches every path.
	PathPrefix string
	// PathExact, if set, matches only this raw path, byte for byte
	// (Ingress's pathType Exact); PathPrefix is then unused.
	PathExact string
	// Method, if set, must equal the request's method.
	Method string
	// Headers and Query must all hold.
	Headers []ValueMatch
	Query   []ValueMatch
}

// ValueMatch is one header or query parameter condition: the value must
// equal Value, or match Re if set. Header names are canonical
// (case-insensitive, RFC 9110 §5.1); query names compare exactly.
type ValueMatch struct {
	Name  string
	Value string
	Re    *regexp.Regexp // compiled once, at Build
}

// plain reports whether m reads the path alone.
func (m *Match) plain() bool {
	return m.Method == "" && len(m.Headers) == 0 && len(m.Query) == 0
}

// Accepts reports whether a request with this raw path (Path: as sent,
// without the query, not decoded) and, for a match with more than a path,
// req satisfies m. Comparison of paths is byte for byte: "/api%2Fx" is not
// "/api/x", as probe paths (cold.go) are not. A nil req has no method,
// header or query.
func (m *Match) Accepts(path []byte, req Request) bool {
	if !m.acceptsPath(path) {
		return false
	}
	if m.plain() {
		return true
	}
	if req == nil {
		return false
	}
	if m.Method != "" && string(req.Method()) != m.Method {
		return false
	}
	for i := range m.Headers {
		v, ok := req.Header(m.Headers[i].Name)
		if !ok || !m.Headers[i].accepts(v) {
			return false
		}
	}
	if len(m.Query) > 0 {
		q := req.RawQuery()
		for i := range m.Query {
			v, ok := queryValue(q, m.Query[i].Name)
			if !ok || !m.Query[i].accepts(v) {
				return false
			}
		}
	}
	return true
}

func (m *Match) acceptsPath(path []byte) bool {
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

func (v *ValueMatch) accepts(b []byte) bool {
	if v.Re != nil {
		return v.Re.Match(b)
	}
	return string(b) == v.Value
}

// queryValue returns the first value of the query parameter name, decoded
// (Gateway API: with a parameter repeated, match the first). The name is
// compared exactly, after decoding; decoding allocates only for a pair
// that holds "%" or "+".
func queryValue(q []byte, name string) ([]byte, bool) {
	for len(q) > 0 {
		var pair []byte
		pair, q, _ = bytes.Cut(q, []byte{'&'})
		k, v, _ := bytes.Cut(pair, []byte{'='})
		if bytes.ContainsAny(k, "%+") {
			dk, err := url.QueryUnescape(string(k))
			if err != nil || dk != name {
				continue
			}
		} else if string(k) != name {
			continue
		}
		if bytes.ContainsAny(v, "%+") {
			dv, err := url.QueryUnescape(string(v))
			if err != nil {
				return nil, false
			}
			return []byte(dv), true
		}
		return v, true
	}
	return nil, false
}

// compare orders the rules of one host: negative if a is tried before b.
// It is Gateway API's HTTPRouteRule precedence (HTTPRoute spec, "rules"),
// each criterion breaking the previous one's ties: an exact path before
// any prefix, then the longest prefix, then a method match, then the most
// header matches, then the most query matches; then the oldest route
// object (a TOML entry, with no creation time, before any), then the order
// the entries were given (namespace/name for the cluster's: the sort is
// stable).
func compare(a, b *Rule) int {
	if ae, be := a.Match.PathExact != "", b.Match.PathExact != ""; ae != be {
		if ae {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(len(b.Match.PathPrefix), len(a.Match.PathPrefix)); c != 0 {
		return c
	}
	if am, bm := a.Match.Method != "", b.Match.Method != ""; am != bm {
		if am {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(len(b.Match.Headers), len(a.Match.Headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.Match.Query), len(a.Match.Query)); c != 0 {
		return c
	}
	return a.created.Compare(b.created)
}

// Rule sends the requests its Match accepts to its Route, or, for a
// Gateway API rule with weighted backendRefs, to one of its Backends
// picked per request in proportion to their weights (weights.go). Each
// Route carries its own entry's filters (conf.Filters), which the front
// ends apply once it is chosen.
type Rule struct {
	Match Match
	// Route is the rule's one route; nil when Backends are weighted.
	Route *Route
	// Backends are the weighted routes of one conf.Extras.Rule.
	Backends []Backend
	// created is the source object's creation time (conf.Extras.Created).
	created time.Time
	pick    *picker
	// deep: the rule's wildcard host matches names more than one label
	// deep too (conf.Extras.DeepWildcard).
	deep bool
}

// Backend is one weighted route of a rule (a backendRef).
type Backend struct {
	Route  *Route
	Weight int
}

// sortRules puts a host's rules in the order Lookup tries them.
func sortRules(rules []Rule) {
	slices.SortStableFunc(rules, func(a, b Rule) int { return compare(&a, &b) })
}

// first returns the Route of the first of rules that accepts the request.
func first(rules []Rule, path []byte, req Request) *Route {
	return firstOf(rules, path, req, false)
}

// firstOf is first, over the deep rules only if deepOnly: a wildcard
// host's rules tried for a name more than one label below it.
func firstOf(rules []Rule, path []byte, req Request, deepOnly bool) *Route {
	for i := range rules {
		if deepOnly && !rules[i].deep {
			continue
		}
		if rules[i].Match.Accepts(path, req) {
			if rules[i].pick != nil {
				return rules[i].pick.next()
			}
			return rules[i].Route
		}
	}
	return nil
}

// extraMatch is s's match beyond its path, its regexes compiled (conf
// checked them) and its header names canonical.
func extraMatch(s *conf.Service) (Match, error) {
	m := Match{Method: s.Method}
	for _, list := range []struct {
		in     []conf.ValueMatch
		out    *[]ValueMatch
		header bool
	}{{s.Headers, &m.Headers, true}, {s.Query, &m.Query, false}} {
		for _, v := range list.in {
			vm := ValueMatch{Name: v.Name, Value: v.Value}
			if list.header {
				vm.Name = http.CanonicalHeaderKey(v.Name)
			}
			if v.Regex {
				re, err := regexp.Compile(v.Value)
				if err != nil {
					return m, fmt.Errorf("match %q: %w", v.Name, err)
				}
				vm.Re = re
			}
			*list.out = append(*list.out, vm)
		}
	}
	return m, nil
}
