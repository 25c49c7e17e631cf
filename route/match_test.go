package route

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/watch"
)

// req is a test request view (route.Request): method, header fields (any
// case, first value), raw query.
type req struct {
	method string
	header map[string]string
	query  string
}

func (q *req) Method() []byte { return []byte(q.method) }

func (q *req) Header(name string) ([]byte, bool) {
	for k, v := range q.header {
		if strings.EqualFold(k, name) {
			return []byte(v), true
		}
	}
	return nil, false
}

func (q *req) RawQuery() []byte { return []byte(q.query) }

// svc is a validated entry of host a.test for service name, with extras.
func svc(name string, paths []string, x conf.Extras) conf.Service {
	return conf.Service{Host: "a.test", Type: "deployment", Namespace: "apps", Name: name, ServiceName: name,
		ServicePort: 80, Paths: paths, Extras: x}
}

// buildServices validates and builds services as one config.
func buildServices(t testing.TB, services ...conf.Service) *Table {
	t.Helper()
	cfg := &conf.Config{Services: services}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tb, err := Build(cfg, anyReady{}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func lookupName(tb *Table, path string, q *req) string {
	var view Request
	if q != nil {
		view = q
	}
	r, status := tb.Lookup([]byte("a.test"), []byte(path), view)
	if r == nil {
		return http.StatusText(status)
	}
	return r.Svc.ServiceName
}

// TestMatchKinds: each kind of match, alone: a method; headers (names in
// any case, exact or regex values, all must hold); query parameters
// (names exact, the first value, decoded). A rule whose match fails lets
// the request fall to the next.
func TestMatchKinds(t *testing.T) {
	tb := buildServices(t,
		svc("root", []string{"/"}, conf.Extras{}),
		svc("post", []string{"/"}, conf.Extras{Method: "POST"}),
		svc("canary", []string{"/"}, conf.Extras{Headers: []conf.ValueMatch{{Name: "x-canary", Value: "yes"}}}),
		svc("ver", []string{"/"}, conf.Extras{Headers: []conf.ValueMatch{{Name: "X-Version", Value: `^v[0-9]+$`, Regex: true}, {Name: "X-Team", Value: "a"}}}),
		svc("q", []string{"/"}, conf.Extras{Query: []conf.ValueMatch{{Name: "env", Value: "beta"}}}),
		svc("qre", []string{"/"}, conf.Extras{Query: []conf.ValueMatch{{Name: "Id", Value: `^[0-9]+$`, Regex: true}}}),
	)
	tests := []struct {
		name string
		q    *req
		want string
	}{
		{"no view", nil, "root"},
		{"plain GET", &req{method: "GET"}, "root"},
		{"method", &req{method: "POST"}, "post"},
		{"method case", &req{method: "post"}, "root"},
		{"header any case", &req{method: "GET", header: map[string]string{"X-CANARY": "yes"}}, "canary"},
		{"header value exact", &req{method: "GET", header: map[string]string{"X-Canary": "Yes"}}, "root"},
		{"two headers, regex", &req{method: "GET", header: map[string]string{"x-version": "v12", "x-team": "a"}}, "ver"},
		{"two headers, one fails", &req{method: "GET", header: map[string]string{"x-version": "v12", "x-team": "b"}}, "root"},
		{"regex fails", &req{method: "GET", header: map[string]string{"x-version": "v1x", "x-team": "a"}}, "root"},
		{"query", &req{method: "GET", query: "a=1&env=beta"}, "q"},
		{"query first value", &req{method: "GET", query: "env=prod&env=beta"}, "root"},
		{"query decoded", &req{method: "GET", query: "env=%62eta"}, "q"},
		{"query name exact", &req{method: "GET", query: "ENV=beta"}, "root"},
		{"query empty value", &req{method: "GET", query: "env"}, "root"},
		{"query regex", &req{method: "GET", query: "Id=42"}, "qre"},
		{"query regex fails", &req{method: "GET", query: "Id=4x"}, "root"},
	}
	for _, tt := range tests {
		if got := lookupName(tb, "/x", tt.q); got != tt.want {
			t.Errorf("%s: got %s; want %s", tt.name, got, tt.want)
		}
	}
}

// TestMatchPrecedence: Gateway API's HTTPRouteRule order: an exact path,
// the longest prefix, a method, the most headers, the most query
// parameters; then the oldest object, then the order given.
func TestMatchPrecedence(t *testing.T) {
	old, young := time.Unix(1000, 0), time.Unix(2000, 0)
	h := func(names ...string) []conf.ValueMatch {
		var out []conf.ValueMatch
		for _, n := range names {
			out = append(out, conf.ValueMatch{Name: n, Value: "1"})
		}
		return out
	}
	tb := buildServices(t,
		svc("young", []string{"/p"}, conf.Extras{Query: h("k"), Created: young, Source: "HTTPRoute apps/y"}),
		svc("q2", []string{"/p"}, conf.Extras{Query: h("k", "l"), Source: "HTTPRoute apps/q2"}),
		svc("h1", []string{"/p"}, conf.Extras{Headers: h("A"), Source: "HTTPRoute apps/h1"}),
		svc("h2", []string{"/p"}, conf.Extras{Headers: h("A", "B"), Source: "HTTPRoute apps/h2"}),
		svc("m", []string{"/p"}, conf.Extras{Method: "GET", Source: "HTTPRoute apps/m"}),
		svc("mh", []string{"/p"}, conf.Extras{Method: "GET", Headers: h("A"), Source: "HTTPRoute apps/mh"}),
		svc("old", []string{"/p"}, conf.Extras{Query: h("m"), Created: old, Source: "HTTPRoute apps/o"}),
		svc("first", []string{"/p"}, conf.Extras{Query: h("n"), Created: old, Source: "HTTPRoute apps/f"}),
		svc("long", []string{"/p/q"}, conf.Extras{}),
		func() conf.Service {
			s := svc("exact", nil, conf.Extras{})
			s.ExactPaths = []string{"/p/q"}
			return s
		}(),
		svc("plain", []string{"/p"}, conf.Extras{}),
	)
	all := map[string]string{"a": "1", "b": "1"}
	tests := []struct {
		name, path string
		q          *req
		want       string
	}{
		{"exact before longest prefix", "/p/q", &req{method: "GET", header: all}, "exact"},
		{"longest prefix before method", "/p/q/r", &req{method: "GET", header: all}, "long"},
		{"method before headers", "/p", &req{method: "GET", header: all}, "mh"},
		{"method, then headers", "/p", &req{method: "GET", header: map[string]string{"b": "1"}}, "m"},
		{"most headers", "/p", &req{method: "PUT", header: all, query: "k=1&l=1"}, "h2"},
		{"headers before query", "/p", &req{method: "PUT", header: map[string]string{"a": "1"}, query: "k=1&l=1"}, "h1"},
		{"most query parameters", "/p", &req{method: "PUT", query: "k=1&l=1"}, "q2"},
		{"oldest object", "/p", &req{method: "PUT", query: "k=1&m=1&n=1"}, "old"},
		{"then the order given", "/p", &req{method: "PUT", query: "k=1&n=1"}, "first"},
		{"young alone", "/p", &req{method: "PUT", query: "k=1"}, "young"},
		{"the plain rule last", "/p", &req{method: "PUT"}, "plain"},
	}
	for _, tt := range tests {
		if got := lookupName(tb, tt.path, tt.q); got != tt.want {
			t.Errorf("%s: %s got %s; want %s", tt.name, tt.path, got, tt.want)
		}
	}
}

// TestLookupPlainWithViewDoesNotAllocate: a host with path rules only
// never reads the view; a header rule's match allocates nothing either.
func TestLookupWithViewDoesNotAllocate(t *testing.T) {
	tb := buildServices(t,
		svc("root", []string{"/"}, conf.Extras{}),
		svc("canary", []string{"/api"}, conf.Extras{Headers: []conf.ValueMatch{{Name: "X-Canary", Value: `^y`, Regex: true}}}),
	)
	host, path := []byte("a.test"), []byte("/api/x")
	q := &viewNoAlloc{v: []byte("yes")}
	if n := testing.AllocsPerRun(100, func() { tb.Lookup(host, path, q) }); n != 0 {
		t.Errorf("Lookup with a header rule allocates %v times; want 0", n)
	}
	if r, _ := tb.Lookup(host, path, q); r == nil || r.Svc.ServiceName != "canary" {
		t.Errorf("Lookup = %v; want canary", r)
	}
}

// viewNoAlloc answers every header with v, as a front end's view does
// without copying.
type viewNoAlloc struct{ v []byte }

func (q *viewNoAlloc) Method() []byte               { return []byte("GET") }
func (q *viewNoAlloc) Header(string) ([]byte, bool) { return q.v, true }
func (q *viewNoAlloc) RawQuery() []byte             { return nil }

func BenchmarkLookupPlainHostWithView(b *testing.B) {
	tb := buildTable(b, splitEntries...)
	host, path := []byte("a.ex.test"), []byte("/api/v2/items/42")
	q := &viewNoAlloc{}
	b.ReportAllocs()
	for b.Loop() {
		tb.Lookup(host, path, q)
	}
}

func BenchmarkLookupHeaderRules(b *testing.B) {
	tb := buildServices(b,
		svc("root", []string{"/"}, conf.Extras{}),
		svc("canary", []string{"/api"}, conf.Extras{Headers: []conf.ValueMatch{{Name: "X-Canary", Value: "yes"}}}),
		svc("ver", []string{"/api"}, conf.Extras{Headers: []conf.ValueMatch{{Name: "X-Version", Value: `^v[0-9]+$`, Regex: true}}}),
	)
	host, path := []byte("a.test"), []byte("/api/items/42")
	q := &viewNoAlloc{v: []byte("v12")}
	b.ReportAllocs()
	for b.Loop() {
		tb.Lookup(host, path, q)
	}
}

// strictReady has a readiness for every service but the empty one.
type strictReady struct{}

func (strictReady) Service(k watch.Key) *watch.Service {
	if k.Service == "" {
		return nil
	}
	return &watch.Service{}
}

// TestNoBackendEntries: a redirect or fixed entry without a service asks
// no readiness watch (Keys, Build) and answers itself.
func TestNoBackendEntries(t *testing.T) {
	cfg := &conf.Config{Services: []conf.Service{
		svc("web", []string{"/"}, conf.Extras{}),
		{Host: "a.test", Paths: []string{"/old"}, Extras: conf.Extras{Source: "HTTPRoute apps/r", Filters: &conf.Filters{Redirect: &conf.Redirect{Hostname: "b.test"}}}},
		{Host: "a.test", Paths: []string{"/gone"}, Extras: conf.Extras{Source: "HTTPRoute apps/f", Fixed: 503}},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if keys := Keys(cfg); len(keys) != 1 || keys[0].Service != "web" {
		t.Errorf("Keys = %v; want web's only", keys)
	}
	tb, err := Build(cfg, strictReady{}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path   string
		status int
		loc    string
		name   string
	}{
		{"/old/x", 302, "http://b.test/old/x", "HTTPRoute apps/r redirect"},
		{"/gone", 503, "", "HTTPRoute apps/f 503"},
		{"/web", 0, "", "a.test"},
	} {
		r, _ := tb.Lookup([]byte("a.test"), []byte(tt.path), nil)
		if r == nil {
			t.Fatalf("%s: no route", tt.path)
		}
		status, loc := r.Answer(false, 0, []byte("a.test"), []byte(tt.path), []byte(tt.path))
		if status != tt.status || string(loc) != tt.loc || r.Name() != tt.name {
			t.Errorf("%s: Answer = %d %q, Name %q; want %d %q, %q", tt.path, status, loc, r.Name(), tt.status, tt.loc, tt.name)
		}
	}
}

// TestDeepWildcard: a wildcard host from Gateway API (DeepWildcard)
// matches names any number of labels below it; one from Ingress or TOML,
// one label only; the most specific wildcard is tried first, and "*.com"
// is never tried.
func TestDeepWildcard(t *testing.T) {
	mk := func(name, host string, deep bool) conf.Service {
		s := svc(name, []string{"/"}, conf.Extras{DeepWildcard: deep})
		s.Host = host
		return s
	}
	tb := buildServices(t, mk("deep", "*.example.com", true), mk("shallow", "*.example.org", false),
		mk("specific", "*.b.example.com", false))
	tests := []struct{ host, want string }{
		{"a.example.com", "deep"},
		{"a.b.example.com", "specific"},
		{"a.c.example.com", "deep"},
		{"x.y.z.example.com", "deep"},
		{"a.example.org", "shallow"},
		{"a.b.example.org", "Not Found"},
		{"example.com", "Not Found"},
		{"a.com", "Not Found"},
	}
	for _, tt := range tests {
		got := "Not Found"
		if r, _ := tb.Lookup([]byte(tt.host), []byte("/"), nil); r != nil {
			got = r.Svc.ServiceName
		}
		if got != tt.want {
			t.Errorf("Lookup(%s) = %s; want %s", tt.host, got, tt.want)
		}
	}
}
