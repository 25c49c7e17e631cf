package route

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agimo/agimo/conf"
)

// FuzzLookupRules checks Gateway API's rule precedence against a plain
// reference. Each line of spec is a rule of host a.test: a path ("=/x"
// exact, else a prefix), then tokens "M" (method GET), "h:N" (header N
// equals "1"), "q:N" (query parameter N equals "1"), "c:D" (created at
// second D). The request has path, method GET or POST, the headers and
// query parameters named by the letters of hs and qs, each "1".
// Invariant: Lookup never panics, and it returns a route if and only if
// some rule accepts the request (by the reference's own reading of it),
// and then the route of the first accepting rule in the reference order:
// exact path, longest prefix, method, most headers, most query
// parameters, oldest, first given.
func FuzzLookupRules(f *testing.F) {
	f.Add("/\n/api M\n/api h:a h:b\n/api q:k c:1\n=/api/x", "/api/x", true, "ab", "k")
	f.Add("/ h:a c:2\n/ h:b c:1\n/ q:k", "/z", false, "ab", "kl")
	f.Add("/a M h:a\n/a h:a h:b\n/a/b q:k", "/a/b", true, "a", "k")
	f.Fuzz(func(t *testing.T, spec, path string, get bool, hs, qs string) {
		type ref struct {
			exact, prefix string
			method        bool
			headers       []string
			query         []string
			created       int
			route         *Route
		}
		var refs []ref
		tb := &Table{hosts: make(map[string][]Rule)}
		seen := make(map[string]bool)
		for i, line := range strings.Split(spec, "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			var rf ref
			if p, ok := strings.CutPrefix(fields[0], "="); ok && strings.HasPrefix(p, "/") {
				rf.exact = p
			} else if strings.HasPrefix(fields[0], "/") {
				rf.prefix = normalizePrefix(fields[0])
			} else {
				continue
			}
			m := Match{PathExact: rf.exact, PathPrefix: rf.prefix}
			for _, tok := range fields[1:] {
				k, v, _ := strings.Cut(tok, ":")
				switch {
				case k == "M":
					rf.method, m.Method = true, http.MethodGet
				case k == "h" && v != "" && !contains(rf.headers, v):
					rf.headers = append(rf.headers, v)
					m.Headers = append(m.Headers, ValueMatch{Name: http.CanonicalHeaderKey(v), Value: "1"})
				case k == "q" && v != "" && !contains(rf.query, v):
					rf.query = append(rf.query, v)
					m.Query = append(m.Query, ValueMatch{Name: v, Value: "1"})
				case k == "c":
					rf.created, _ = strconv.Atoi(v)
				}
			}
			key := rf.exact + " " + rf.prefix + " " + strconv.FormatBool(rf.method) + " " + strings.Join(sorted(rf.headers), ",") + " " + strings.Join(sorted(rf.query), ",")
			if seen[strings.ToLower(key)] {
				continue // an overlap conf refuses
			}
			seen[strings.ToLower(key)] = true
			rf.route = &Route{Host: "a.test", Svc: conf.Service{Host: "a.test", Name: strconv.Itoa(i)}}
			refs = append(refs, rf)
			tb.hosts["a.test"] = append(tb.hosts["a.test"], Rule{Match: m, Route: rf.route, created: time.Unix(int64(rf.created), 0)})
		}
		sortRules(tb.hosts["a.test"])

		q := &req{method: http.MethodPost, header: map[string]string{}}
		if get {
			q.method = http.MethodGet
		}
		// The request's names are letters: nothing for the query's syntax.
		hs, qs = letters(hs), letters(qs)
		for _, c := range hs {
			q.header[string(c)] = "1"
		}
		var qp []string
		for _, c := range qs {
			qp = append(qp, string(c)+"=1")
		}
		q.query = strings.Join(qp, "&")
		hasHeader := func(n string) bool {
			for k := range q.header {
				if strings.EqualFold(k, n) {
					return true
				}
			}
			return false
		}
		hasQuery := func(n string) bool { return len(n) == 1 && strings.Contains(qs, n) }
		accepts := func(rf ref) bool {
			switch {
			case rf.exact != "" && path != rf.exact:
				return false
			case rf.exact == "" && !(rf.prefix == "/" || path == rf.prefix || strings.HasPrefix(path, rf.prefix+"/")):
				return false
			case rf.method && !get:
				return false
			}
			for _, n := range rf.headers {
				if !hasHeader(n) {
					return false
				}
			}
			for _, n := range rf.query {
				if !hasQuery(n) {
					return false
				}
			}
			return true
		}
		// before reports whether a precedes b in Gateway API's order.
		before := func(a, b ref) bool {
			switch {
			case (a.exact != "") != (b.exact != ""):
				return a.exact != ""
			case len(a.prefix) != len(b.prefix):
				return len(a.prefix) > len(b.prefix)
			case a.method != b.method:
				return a.method
			case len(a.headers) != len(b.headers):
				return len(a.headers) > len(b.headers)
			case len(a.query) != len(b.query):
				return len(a.query) > len(b.query)
			}
			return a.created < b.created
		}
		var best *ref
		for i := range refs {
			if accepts(refs[i]) && (best == nil || before(refs[i], *best)) {
				best = &refs[i]
			}
		}
		r, status := tb.Lookup([]byte("a.test"), []byte(path), q)
		switch {
		case best == nil && (r != nil || status != http.StatusNotFound):
			t.Fatalf("Lookup(%q) = rule %s, %d; want nil, 404: no rule accepts it", path, name(r), status)
		case best != nil && r != best.route:
			t.Fatalf("Lookup(%q) = rule %s, %d; want rule %s, the first that accepts it", path, name(r), status, best.route.Svc.Name)
		}
	})
}

func letters(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r
		}
		return -1
	}, s)
}

func normalizePrefix(p string) string {
	if len(p) > 1 {
		return strings.TrimSuffix(p, "/")
	}
	return p
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		out[i] = strings.ToLower(out[i])
	}
	slices.Sort(out)
	return out
}

func name(r *Route) string {
	if r == nil {
		return "none"
	}
	return r.Svc.Name
}
