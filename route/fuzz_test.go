package route

import (
	"net/http"
	"strings"
	"testing"

	"github.com/agimo/agimo/conf"
)

// FuzzLookup checks the rule precedence against a plain reference. The
// prefixes (one a line, alternately of the exact host "a.ex.test" and of
// the wildcard "*.ex.test") make a table; a request for path to a.ex.test
// (exact) or z.ex.test (wildcard only) gets a route if and only if some
// rule accepts it, and then: the chosen rule accepts the path (segment
// boundaries: the prefix is "/", the path, or the path starts with it and
// "/"); it is of the exact host whenever any rule of the exact host
// accepts the path; and no rule of its host that accepts the path has a
// longer prefix.
func FuzzLookup(f *testing.F) {
	f.Add("/\n/api\n/api/v2\n/", "/api/v2x", true)
	f.Add("/api\n/\n/api/x", "/api/x/y", true)
	f.Add("/a\n/a/b", "/a/b", false)
	f.Add("/v1", "/v1%2F", true)
	f.Fuzz(func(t *testing.T, prefixes, path string, exact bool) {
		hosts := [2]string{"a.ex.test", "*.ex.test"}
		tb := &Table{hosts: make(map[string][]Rule)}
		seen := make(map[string]bool)
		for i, p := range strings.Split(prefixes, "\n") {
			if !strings.HasPrefix(p, "/") {
				continue
			}
			if len(p) > 1 {
				p = strings.TrimSuffix(p, "/")
			}
			h := hosts[i%2]
			if seen[h+" "+p] {
				continue // an overlap conf refuses
			}
			seen[h+" "+p] = true
			r := &Route{Host: h, Svc: conf.Service{Host: h, Paths: []string{p}}}
			tb.routes = append(tb.routes, r)
			tb.hosts[h] = append(tb.hosts[h], Rule{Match: Match{PathPrefix: p}, Route: r})
		}
		for _, rules := range tb.hosts {
			sortRules(rules)
		}
		reqHost := "z.ex.test"
		if exact {
			reqHost = "a.ex.test"
		}
		accepts := func(p string) bool { return p == "/" || path == p || strings.HasPrefix(path, p+"/") }
		// best is the longest accepting prefix of host h, or "".
		best := func(h string) string {
			b := ""
			for _, r := range tb.hosts[h] {
				if p := r.Match.PathPrefix; accepts(p) && len(p) > len(b) {
					b = p
				}
			}
			return b
		}
		r, status := tb.Lookup([]byte(reqHost), []byte(path), nil)
		wantHost := ""
		if exact && best("a.ex.test") != "" {
			wantHost = "a.ex.test"
		} else if best("*.ex.test") != "" {
			wantHost = "*.ex.test"
		}
		if wantHost == "" {
			if r != nil || status != http.StatusNotFound {
				t.Fatalf("Lookup(%q, %q) = %v, %d; want nil, 404: no rule accepts it", reqHost, path, r != nil, status)
			}
			return
		}
		if r == nil {
			t.Fatalf("Lookup(%q, %q) = nil, %d; want a route of %s", reqHost, path, status, wantHost)
		}
		got := r.Svc.Paths[0]
		if r.Host != wantHost {
			t.Errorf("Lookup(%q, %q) chose host %s; want %s (exact host first)", reqHost, path, r.Host, wantHost)
		}
		if !accepts(got) {
			t.Errorf("Lookup(%q, %q) chose prefix %q, which does not accept the path", reqHost, path, got)
		}
		if b := best(r.Host); len(b) > len(got) {
			t.Errorf("Lookup(%q, %q) chose prefix %q; %q of the same host is longer", reqHost, path, got, b)
		}
	})
}
