package route

import (
	"net/http"
	"strings"
	"testing"

	"github.com/agimo/agimo/conf"
)

// weighted returns the entries of one rule of a.test "/w", one backend per
// weight, named b0, b1...
func weighted(weights ...int) []conf.Service {
	var out []conf.Service
	for i, w := range weights {
		out = append(out, svc("b"+string(rune('0'+i)), []string{"/w"}, conf.Extras{Rule: "HTTPRoute apps/w rule 0", Weight: w, Source: "HTTPRoute apps/w"}))
	}
	return out
}

// TestWeightedPicks: a rule's backends are picked in proportion to their
// weights, exactly over each cycle of the smooth round-robin (and within
// 2% for weights too large for a cycle, drawn at random); weight 0 is
// never picked; all weights 0 answer 500.
func TestWeightedPicks(t *testing.T) {
	tests := []struct {
		weights []int
		picks   int
		exact   bool
	}{
		{[]int{1, 3}, 1000, true},
		{[]int{80, 20}, 1000, true},
		{[]int{50, 0, 50}, 1000, true},
		{[]int{1}, 10, true},
		{[]int{999983, 1000003, 3000017}, 200000, false}, // primes: no short cycle
	}
	for _, tt := range tests {
		tb := buildServices(t, weighted(tt.weights...)...)
		counts := make(map[string]int)
		for range tt.picks {
			r, status := tb.Lookup([]byte("a.test"), []byte("/w/x"), nil)
			if r == nil {
				t.Fatalf("weights %v: Lookup = nil, %d; want a backend", tt.weights, status)
			}
			counts[r.Svc.ServiceName]++
		}
		sum := 0
		for _, w := range tt.weights {
			sum += w
		}
		for i, w := range tt.weights {
			name := "b" + string(rune('0'+i))
			want := float64(tt.picks) * float64(w) / float64(sum)
			got := float64(counts[name])
			if tt.exact && got != want || !tt.exact && (got < want-0.02*float64(tt.picks) || got > want+0.02*float64(tt.picks)) {
				t.Errorf("weights %v: %s picked %v times of %d; want %v", tt.weights, name, got, tt.picks, want)
			}
		}
	}
	tb := buildServices(t, weighted(0, 0)...)
	r, status := tb.Lookup([]byte("a.test"), []byte("/w"), nil)
	if r == nil || status != 0 {
		t.Fatalf("all weights 0: Lookup = %v, %d; want a route answering 500", r, status)
	}
	if got, _ := r.Answer(false, 0, []byte("a.test"), []byte("/w"), []byte("/w")); got != http.StatusInternalServerError {
		t.Errorf("all weights 0: Answer = %d; want 500", got)
	}
}

// TestSmoothCycle: the cycle spreads a backend's picks (nginx's smooth
// weighted round-robin): 5:1:1 gives a a a b a c a, not a a a a a b c.
func TestSmoothCycle(t *testing.T) {
	a, b, c := &Route{Host: "a"}, &Route{Host: "b"}, &Route{Host: "c"}
	p := newPicker([]Backend{{a, 5}, {b, 1}, {c, 1}})
	got := ""
	for range 7 {
		got += p.next().Host
	}
	if got != "aabacaa" {
		t.Errorf("cycle of 5:1:1 = %s; want aabacaa", got)
	}
}

func TestAnswerRedirect(t *testing.T) {
	tests := []struct {
		name      string
		rd        conf.Redirect
		paths     []string
		tls       bool
		port      int // the listener port the request arrived on; 0: unknown
		host, uri string
		status    int
		location  string
	}{
		{"defaults", conf.Redirect{}, []string{"/"}, false, 0, "a.test", "/x?q=1", 302, "http://a.test/x?q=1"},
		{"keeps the listener port", conf.Redirect{StatusCode: 301}, []string{"/"}, false, 0, "a.test:8080", "/x", 301, "http://a.test:8080/x"},
		{"scheme brings its port", conf.Redirect{Scheme: "https"}, []string{"/"}, false, 0, "a.test:8080", "/x", 302, "https://a.test/x"},
		{"default port omitted", conf.Redirect{Scheme: "https", Port: 443}, []string{"/"}, false, 0, "a.test", "/", 302, "https://a.test/"},
		{"port kept when not default", conf.Redirect{Scheme: "https", Port: 8443}, []string{"/"}, false, 0, "a.test", "/", 302, "https://a.test:8443/"},
		{"http port 80 omitted", conf.Redirect{Port: 80}, []string{"/"}, false, 0, "a.test:8080", "/", 302, "http://a.test/"},
		{"over tls", conf.Redirect{Hostname: "b.test"}, []string{"/"}, true, 0, "a.test", "/y", 302, "https://b.test/y"},
		{"no scheme: the listener's port", conf.Redirect{}, []string{"/"}, false, 45547, "a.test", "/x", 302, "http://a.test:45547/x"},
		{"no scheme: the listener's port, not Host's", conf.Redirect{}, []string{"/"}, false, 8080, "a.test:9999", "/x", 302, "http://a.test:8080/x"},
		{"no scheme: listener port 443 over TLS omitted", conf.Redirect{}, []string{"/"}, true, 443, "a.test", "/x", 302, "https://a.test/x"},
		{"scheme set: its port, not the listener's", conf.Redirect{Scheme: "https"}, []string{"/"}, false, 8080, "a.test", "/x", 302, "https://a.test/x"},
		{"ipv6", conf.Redirect{Port: 8080}, []string{"/"}, false, 0, "[::1]", "/", 302, "http://[::1]:8080/"},
		{"full path", conf.Redirect{Path: &conf.PathModifier{ReplaceFullPath: "/new"}}, []string{"/old"}, false, 0, "a.test", "/old/x?q", 302, "http://a.test/new?q"},
		{"prefix", conf.Redirect{Path: &conf.PathModifier{ReplacePrefixMatch: "/new", Prefix: true}}, []string{"/old"}, false, 0, "a.test", "/old/x?q", 302, "http://a.test/new/x?q"},
	}
	for _, tt := range tests {
		rd := tt.rd
		r := &Route{Svc: svc("r", tt.paths, conf.Extras{Filters: &conf.Filters{Redirect: &rd}})}
		uri := []byte(tt.uri)
		status, loc := r.Answer(tt.tls, tt.port, []byte(tt.host), Path(uri), uri)
		if status != tt.status || string(loc) != tt.location {
			t.Errorf("%s: got %d %q; want %d %q", tt.name, status, loc, tt.status, tt.location)
		}
	}
	if status, _ := (&Route{}).Answer(false, 0, []byte("a"), []byte("/"), []byte("/")); status != 0 {
		t.Errorf("a route without filters answers %d; want 0", status)
	}
}

// TestRewritePath: Gateway API's HTTPPathModifier table (ReplacePrefixMatch
// on segment boundaries), and ReplaceFullPath; the query is kept.
func TestRewritePath(t *testing.T) {
	tests := []struct {
		prefix, repl, path, want string
	}{
		{"/foo", "/xyz", "/foo/bar", "/xyz/bar"},
		{"/foo/", "/xyz", "/foo/bar", "/xyz/bar"},
		{"/foo", "/xyz/", "/foo/bar", "/xyz/bar"},
		{"/foo/", "/xyz/", "/foo/bar", "/xyz/bar"},
		{"/foo", "/", "/foo/bar", "/bar"},
		{"/foo", "", "/foo/bar", "/bar"},
		{"/foo", "/xyz", "/foo", "/xyz"},
		{"/foo", "/xyz", "/foo/", "/xyz/"},
		{"/foo", "/", "/foo", "/"},
		{"/foo", "/", "/foo/", "/"},
		{"/", "/xyz", "/bar", "/xyz/bar"},
		{"/", "", "/bar", "/bar"},
	}
	for _, tt := range tests {
		cfgPath := tt.prefix // as conf normalises it
		if len(cfgPath) > 1 {
			cfgPath = strings.TrimSuffix(cfgPath, "/")
		}
		r := &Route{Svc: svc("r", []string{cfgPath}, conf.Extras{Filters: &conf.Filters{Rewrite: &conf.Rewrite{
			Path: &conf.PathModifier{ReplacePrefixMatch: tt.repl, Prefix: true}}}})}
		uri := []byte(tt.path + "?q=1")
		host, target := r.Rewrite(Path(uri), uri)
		if host != "" || string(target) != tt.want+"?q=1" {
			t.Errorf("prefix %q replaced by %q on %q: got %q %q; want \"\" %q", tt.prefix, tt.repl, tt.path, host, target, tt.want+"?q=1")
		}
	}
	r := &Route{Svc: svc("r", []string{"/a"}, conf.Extras{Filters: &conf.Filters{Rewrite: &conf.Rewrite{
		Hostname: "up.test", Path: &conf.PathModifier{ReplaceFullPath: "/full"}}}})}
	if host, target := r.Rewrite([]byte("/a/b"), []byte("/a/b")); host != "up.test" || string(target) != "/full" {
		t.Errorf("full path and host: got %q %q; want up.test /full", host, target)
	}
	r = &Route{Svc: svc("r", []string{"/a"}, conf.Extras{Filters: &conf.Filters{Rewrite: &conf.Rewrite{Hostname: "up.test"}}})}
	if host, target := r.Rewrite([]byte("/a/b"), []byte("/a/b")); host != "up.test" || target != nil {
		t.Errorf("host only: got %q %q; want up.test, nil", host, target)
	}
}

// TestEditHeaders: remove, then set, then add, on http.Header.
func TestEditHeaders(t *testing.T) {
	r := &Route{Svc: svc("r", nil, conf.Extras{Filters: &conf.Filters{
		RequestHeaders: &conf.HeaderEdit{
			Set:    []conf.Header{{Name: "x-set", Value: "s"}, {Name: "X-Both", Value: "set"}},
			Add:    []conf.Header{{Name: "X-Add", Value: "a2"}},
			Remove: []string{"x-gone", "X-Both"},
		},
		ResponseHeaders: &conf.HeaderEdit{Set: []conf.Header{{Name: "X-Resp", Value: "r"}}},
	}})}
	h := http.Header{"X-Set": {"old"}, "X-Add": {"a1"}, "X-Gone": {"g"}, "X-Both": {"b"}}
	r.EditRequest(h)
	want := http.Header{"X-Set": {"s"}, "X-Add": {"a1", "a2"}, "X-Both": {"set"}}
	if len(h) != len(want) {
		t.Errorf("edited request header = %v; want %v", h, want)
	}
	for k, v := range want {
		if got := h.Values(k); len(got) != len(v) || got[0] != v[0] || got[len(got)-1] != v[len(v)-1] {
			t.Errorf("%s = %q; want %q", k, got, v)
		}
	}
	resp := http.Header{}
	r.EditResponse(resp)
	if got := resp.Get("X-Resp"); got != "r" {
		t.Errorf("response X-Resp = %q; want r", got)
	}
}

// TestCarryOverWeighted: a reload keeps the routes of a weighted rule's
// unchanged backends, also in its picks; a changed backend is new; a TLS
// connection to a host with only a weighted rule is no passthrough.
func TestCarryOverWeighted(t *testing.T) {
	old := buildServices(t, weighted(1, 1)...)
	oldRoutes := old.All()
	next := weighted(1, 1)
	next[1].Weight = 3
	tb := buildServices(t, next...)
	tb.CarryOver(old)
	all := tb.All()
	if all[0] != oldRoutes[0] || all[1] == oldRoutes[1] {
		t.Fatalf("carried over b0 %v, b1 %v; want true, false", all[0] == oldRoutes[0], all[1] == oldRoutes[1])
	}
	for range 8 {
		r, _ := tb.Lookup([]byte("a.test"), []byte("/w"), nil)
		if r != all[0] && r != all[1] {
			t.Fatalf("Lookup picked a route not in the table")
		}
	}
	if r := tb.Passthrough([]byte("a.test")); r != nil {
		t.Errorf("Passthrough = %v; want nil", r)
	}
}
