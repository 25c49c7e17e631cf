package route

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/watch"
)

// anyReady gives every service a readiness that is never ready.
type anyReady struct{}

func (anyReady) Service(watch.Key) *watch.Service { return &watch.Service{} }

// entry is one [[services]] entry of a test table, named by its
// service_name.
type entry struct {
	host, name  string
	paths       []string
	passthrough bool
}

// buildTable builds the table of entries through conf, as main does.
func buildTable(t testing.TB, entries ...entry) *Table {
	t.Helper()
	var b strings.Builder
	for _, e := range entries {
		b.WriteString("[[services]]\n")
		b.WriteString("host = \"" + e.host + "\"\ntype = \"deploy\"\nnamespace = \"apps\"\n")
		b.WriteString("name = \"" + e.name + "\"\nservice_name = \"" + e.name + "\"\nservice_port = 80\n")
		if e.paths != nil {
			b.WriteString("paths = [\"" + strings.Join(e.paths, "\", \"") + "\"]\n")
		}
		if e.passthrough {
			b.WriteString("tls_passthrough = true\n")
		}
	}
	cfg, err := conf.Parse(strings.NewReader(b.String()))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	tb, err := Build(cfg, anyReady{}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

var splitEntries = []entry{
	{host: "a.ex.test", name: "root"},
	{host: "a.ex.test", name: "api", paths: []string{"/api"}},
	{host: "a.ex.test", name: "v2", paths: []string{"/api/v2/", "/v2"}},
	{host: "*.ex.test", name: "wild"},
	{host: "b.ex.test", name: "bonly", paths: []string{"/only"}},
	{host: "c.example", name: "conly", paths: []string{"/v1"}},
}

// TestLookupPrecedence: exact hosts before wildcards, the longest prefix
// of the host first, prefixes on segment boundaries, bytes as sent.
func TestLookupPrecedence(t *testing.T) {
	tb := buildTable(t, splitEntries...)
	tests := []struct {
		host, path string
		want       string // service_name, "" for none
		status     int
	}{
		{"a.ex.test", "/", "root", 0},
		{"a.ex.test", "", "root", 0},
		{"a.ex.test", "*", "root", 0},
		{"a.ex.test", "/api", "api", 0},
		{"a.ex.test", "/api/", "api", 0},
		{"a.ex.test", "/api/x", "api", 0},
		{"a.ex.test", "/apix", "root", 0},
		{"a.ex.test", "/API", "root", 0},
		{"a.ex.test", "/api/v2", "v2", 0},
		{"a.ex.test", "/api/v2/", "v2", 0},
		{"a.ex.test", "/api/v2/x/y", "v2", 0},
		{"a.ex.test", "/api/v2x", "api", 0},
		{"a.ex.test", "/v2", "v2", 0},
		{"a.ex.test", "/api%2Fv2", "root", 0}, // not decoded: not under /api
		{"a.ex.test", "/api;v=1", "root", 0},
		{"A.Ex.Test.:8080", "/api/x", "api", 0},
		{"x.ex.test", "/api", "wild", 0},
		{"b.ex.test", "/only/x", "bonly", 0},
		{"b.ex.test", "/other", "wild", 0}, // the exact host's rules do not match: the wildcard's may
		{"x.y.ex.test", "/", "", http.StatusNotFound},
		{"c.example", "/v1", "conly", 0},
		{"c.example", "/v2", "", http.StatusNotFound},
		{"c.example", "/", "", http.StatusNotFound},
		{"unknown.example", "/", "", http.StatusNotFound},
		{"", "/", "", http.StatusBadRequest},
		{"a b", "/", "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		r, status := tb.Lookup([]byte(tt.host), []byte(tt.path), nil)
		got := ""
		if r != nil {
			got = r.Svc.ServiceName
		}
		if got != tt.want || status != tt.status {
			t.Errorf("Lookup(%q, %q) = %q, %d; want %q, %d", tt.host, tt.path, got, status, tt.want, tt.status)
		}
	}
}

func TestMatchAccepts(t *testing.T) {
	tests := []struct {
		prefix, path string
		want         bool
	}{
		{"/", "", true},
		{"/", "/anything", true},
		{"/api", "/api", true},
		{"/api", "/api/", true},
		{"/api", "/api/x", true},
		{"/api", "/apix", false},
		{"/api", "/ap", false},
		{"/api", "", false},
		{"/api", "/Api", false},
		{"/a/b", "/a/b/c", true},
		{"/a/b", "/a/bc", false},
		{"/a/b", "/a", false},
	}
	for _, tt := range tests {
		m := Match{PathPrefix: tt.prefix}
		if got := m.Accepts([]byte(tt.path), nil); got != tt.want {
			t.Errorf("Match{%q}.Accepts(%q) = %v; want %v", tt.prefix, tt.path, got, tt.want)
		}
	}
}

// Lookup is on every request's path: it must not allocate.
func TestLookupDoesNotAllocate(t *testing.T) {
	tb := buildTable(t, splitEntries...)
	host, path := []byte("b.ex.test"), []byte("/other/x")
	if n := testing.AllocsPerRun(100, func() { tb.Lookup(host, path, nil) }); n != 0 {
		t.Errorf("Lookup allocates %v times; want 0", n)
	}
}

// Passthrough is by host alone: the exact host if it has entries, else
// the wildcard, and only for a tls_passthrough entry.
func TestPassthrough(t *testing.T) {
	tb := buildTable(t,
		entry{host: "pt.test", name: "pt", passthrough: true},
		entry{host: "*.w.test", name: "wpt", passthrough: true},
		entry{host: "e.w.test", name: "e", paths: []string{"/api"}},
		entry{host: "plain.test", name: "plain"},
	)
	for _, tt := range []struct{ sni, want string }{
		{"pt.test", "pt"},
		{"PT.test", "pt"},
		{"z.w.test", "wpt"},
		{"e.w.test", ""}, // its own entry terminates TLS, though "/" falls to the wildcard over HTTP
		{"plain.test", ""},
		{"none.test", ""},
		{"", ""},
	} {
		got := ""
		if r := tb.Passthrough([]byte(tt.sni)); r != nil {
			got = r.Svc.ServiceName
		}
		if got != tt.want {
			t.Errorf("Passthrough(%q) = %q; want %q", tt.sni, got, tt.want)
		}
	}
}

// CarryOver keeps each unchanged entry's Route, now that a host has
// several: the same pointer in All and through Lookup; a changed or new
// entry of the same host gets a new one.
func TestCarryOverPerEntry(t *testing.T) {
	old := buildTable(t,
		entry{host: "a.test", name: "root"},
		entry{host: "a.test", name: "api", paths: []string{"/api"}},
		entry{host: "a.test", name: "web", paths: []string{"/web"}},
	)
	oldAPI, _ := old.Lookup([]byte("a.test"), []byte("/api"), nil)
	oldRoot, _ := old.Lookup([]byte("a.test"), []byte("/"), nil)
	oldWeb, _ := old.Lookup([]byte("a.test"), []byte("/web"), nil)
	next := buildTable(t,
		entry{host: "a.test", name: "root2"}, // changed: another service
		entry{host: "a.test", name: "api", paths: []string{"/api"}},
		entry{host: "a.test", name: "web", paths: []string{"/web", "/w"}}, // changed: paths
		entry{host: "a.test", name: "new", paths: []string{"/new"}},
	)
	next.CarryOver(old)
	api, _ := next.Lookup([]byte("a.test"), []byte("/api/x"), nil)
	if api != oldAPI {
		t.Errorf("/api route not carried over")
	}
	if root, _ := next.Lookup([]byte("a.test"), []byte("/"), nil); root == oldRoot || root.Svc.ServiceName != "root2" {
		t.Errorf("/ route: carried over %v, service %q; want a new route to root2", root == oldRoot, root.Svc.ServiceName)
	}
	if web, _ := next.Lookup([]byte("a.test"), []byte("/web"), nil); web == oldWeb {
		t.Errorf("/web route with new paths carried over; want a new route")
	}
	all := next.All()
	if len(all) != 4 || all[1] != oldAPI {
		t.Errorf("All() = %d routes, [1] carried %v; want 4, true", len(all), len(all) > 1 && all[1] == oldAPI)
	}
}

// Two entries of one host share its series (host label only) but count
// their requests apart, for the idler.
func TestActivityPerRoute(t *testing.T) {
	tb := buildTable(t, splitEntries[:2]...)
	root, _ := tb.Lookup([]byte("a.ex.test"), []byte("/"), nil)
	api, _ := tb.Lookup([]byte("a.ex.test"), []byte("/api"), nil)
	if root.M.Requests != api.M.Requests || root.M.Active != api.M.Active {
		t.Fatal("entries of one host have different series; want the host's")
	}
	api.CountRequest()
	api.CountRequest()
	api.EndRequest()
	if n, active := api.Activity(); n != 2 || active != 1 {
		t.Errorf("api Activity() = %d, %d; want 2, 1", n, active)
	}
	if n, active := root.Activity(); n != 0 || active != 0 {
		t.Errorf("root Activity() = %d, %d; want 0, 0", n, active)
	}
	if got := api.M.Requests.Get(); got != 2 {
		t.Errorf("host requests = %d; want 2", got)
	}
	if got := api.M.Active.Get(); got != 1 {
		t.Errorf("host active = %v; want 1", got)
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := buildTable(b, splitEntries...)
	host, path := []byte("a.ex.test"), []byte("/api/v2/items/42")
	b.ReportAllocs()
	for b.Loop() {
		tb.Lookup(host, path, nil)
	}
}

// TestLookupCatchAll: the catch-all host "*" (an Ingress's defaultBackend)
// takes what no exact or wildcard host's rules accept, and nothing else.
func TestLookupCatchAll(t *testing.T) {
	tb := buildTable(t, append(slices.Clone(splitEntries), entry{host: "*", name: "default"})...)
	tests := []struct{ host, path, want string }{
		{"a.ex.test", "/api/x", "api"},
		{"x.ex.test", "/", "wild"},
		{"x.y.ex.test", "/", "default"},
		{"c.example", "/v2", "default"},
		{"unknown.example", "/", "default"},
	}
	for _, tt := range tests {
		r, status := tb.Lookup([]byte(tt.host), []byte(tt.path), nil)
		if r == nil || r.Svc.ServiceName != tt.want {
			t.Errorf("Lookup(%q, %q) = %v, %d; want %q", tt.host, tt.path, r, status, tt.want)
		}
	}
}

// TestLookupExact: an exact path (Ingress's pathType Exact) takes only
// itself, byte for byte, before any prefix of its host.
func TestLookupExact(t *testing.T) {
	cfg := &conf.Config{Services: []conf.Service{
		{Host: "a.test", Type: "deployment", Namespace: "apps", Name: "root", ServiceName: "root", ServicePort: 80},
		{Host: "a.test", Type: "deployment", Namespace: "apps", Name: "api", ServiceName: "api", ServicePort: 80, Paths: []string{"/api"}},
		{Host: "a.test", Type: "deployment", Namespace: "apps", Name: "exact", ServiceName: "exact", ServicePort: 80, ExactPaths: []string{"/api"}},
		{Host: "a.test", Type: "deployment", Namespace: "apps", Name: "slash", ServiceName: "slash", ServicePort: 80, ExactPaths: []string{"/x/"}},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tb, err := Build(cfg, anyReady{}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{"/api", "exact"},
		{"/api/", "api"},
		{"/api/x", "api"},
		{"/API", "root"},
		{"/x/", "slash"},
		{"/x", "root"},
		{"/", "root"},
	}
	for _, tt := range tests {
		r, status := tb.Lookup([]byte("a.test"), []byte(tt.path), nil)
		if r == nil || r.Svc.ServiceName != tt.want {
			t.Errorf("Lookup(a.test, %q) = %v, %d; want %q", tt.path, r, status, tt.want)
		}
	}
}
