//go:build e2e

package e2e

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Issue 12, Gateway API: every Core match of an HTTPRoute (path Exact and PathPrefix,
// header, query parameter, method) on a Gateway of Agimo's class, and the precedence the
// spec orders among rules that all match (HTTPRouteRule.matches: exact path, then the
// longest prefix, then method, then the most header matches, then the most query matches).
func TestGatewayHTTPRouteMatches(t *testing.T) {
	ns := newNamespace(t)
	g := startGateway(t, ns, gatewayOpts{})
	mainPod, pa, pb := startPod(t, "main-0"), startPod(t, "a-0"), startPod(t, "b-0")
	warmWorkload(t, ns, "main", mainPod)
	warmWorkload(t, ns, "a", pa)
	warmWorkload(t, ns, "b", pb)

	host := "web." + ns + ".e2e"
	withHeader := func(m gatewayv1.HTTPRouteMatch, name, value string) gatewayv1.HTTPRouteMatch {
		m.Headers = append(m.Headers, gatewayv1.HTTPHeaderMatch{Type: ptr(gatewayv1.HeaderMatchExact),
			Name: gatewayv1.HTTPHeaderName(name), Value: value})
		return m
	}
	root := pathMatch(gatewayv1.PathMatchPathPrefix, "/")
	byQuery := root
	byQuery.QueryParams = []gatewayv1.HTTPQueryParamMatch{{Type: ptr(gatewayv1.QueryParamMatchExact), Name: "variant", Value: "canary"}}
	byMethod := root
	byMethod.Method = ptr(gatewayv1.HTTPMethodDelete)
	g.createHTTPRoute(t, ns, "web", []string{host},
		rule(root, backend("main")),
		rule(pathMatch(gatewayv1.PathMatchExact, "/exact"), backend("a")),
		rule(pathMatch(gatewayv1.PathMatchPathPrefix, "/prefix"), backend("a")),
		rule(withHeader(root, "X-Variant", "canary"), backend("b")),
		rule(byQuery, backend("a")),
		rule(byMethod, backend("a")),
	)
	g.waitRouteCondition(t, "HTTPRoute web", g.httpRouteStatus(ns, "web"), "Accepted", metav1.ConditionTrue, "Accepted")
	g.waitRouteCondition(t, "HTTPRoute web", g.httpRouteStatus(ns, "web"), "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")
	g.waitServed(t, host, "/", mainPod)

	canary := http.Header{"X-Variant": {"canary"}}
	for _, c := range []struct {
		name, method, path string
		header             http.Header
		want               *fakePod
	}{
		{"no match but the root", "GET", "/", nil, mainPod},
		{"Exact", "GET", "/exact", nil, pa},
		{"Exact is not a prefix", "GET", "/exact/more", nil, mainPod},
		{"PathPrefix itself", "GET", "/prefix", nil, pa},
		{"PathPrefix, a path below", "GET", "/prefix/x", nil, pa},
		{"PathPrefix on segments only", "GET", "/prefixes", nil, mainPod},
		{"header", "GET", "/", canary, pb},
		{"header name in any case (RFC 9110 §5.1)", "GET", "/", http.Header{"x-variant": {"canary"}}, pb},
		{"header, other value", "GET", "/", http.Header{"X-Variant": {"stable"}}, mainPod},
		{"query", "GET", "/?variant=canary", nil, pa},
		{"query, other value", "GET", "/?variant=stable", nil, mainPod},
		{"method", "DELETE", "/", nil, pa},
		{"method, other", "POST", "/", nil, mainPod},
		{"path before headers", "GET", "/prefix/x", canary, pa},
		{"method before headers", "DELETE", "/", canary, pa},
		{"headers before query", "GET", "/?variant=canary", canary, pb},
	} {
		r := g.A.do(plainClient, c.method, host, c.path, c.header)
		if r.Err != nil || r.Status != 200 || !strings.Contains(r.Body, "pod="+c.want.Name+" ") {
			t.Errorf("%s: %s %s %v: %d %v %q; want 200 from %s", c.name, c.method, c.path, c.header, r.Status, r.Err, r.Body, c.want.Name)
		}
	}
	if r := g.A.get("other."+ns+".e2e", "/"); r.Status != 404 {
		t.Errorf("a host no route names: %d %q; want 404", r.Status, r.Body)
	}
}

// Issue 12: HTTPRoute's Core filters: RequestHeaderModifier (what the pod received),
// ResponseHeaderModifier (what the client received), RequestRedirect (no upstream, the
// Location the spec derives) and URLRewrite (the Host and path the pod received).
func TestGatewayHTTPRouteFilters(t *testing.T) {
	ns := newNamespace(t)
	g := startGateway(t, ns, gatewayOpts{})
	pod := startPod(t, "app-0")
	warmWorkload(t, ns, "app", pod)
	host := "web." + ns + ".e2e"
	_, listenerPort, _ := strings.Cut(g.A.ProxyAddr, ":")

	filtered := func(path string, f gatewayv1.HTTPRouteFilter, backends ...gatewayv1.HTTPBackendRef) gatewayv1.HTTPRouteRule {
		r := rule(pathMatch(gatewayv1.PathMatchPathPrefix, path), backends...)
		r.Filters = []gatewayv1.HTTPRouteFilter{f}
		return r
	}
	edit := &gatewayv1.HTTPHeaderFilter{
		Set:    []gatewayv1.HTTPHeader{{Name: "X-Set", Value: "by-route"}},
		Add:    []gatewayv1.HTTPHeader{{Name: "X-Add", Value: "by-route"}},
		Remove: []string{"X-Remove"},
	}
	respEdit := &gatewayv1.HTTPHeaderFilter{
		Set:    []gatewayv1.HTTPHeader{{Name: "X-Resp-Set", Value: "by-route"}},
		Add:    []gatewayv1.HTTPHeader{{Name: "X-Resp-Add", Value: "by-route"}},
		Remove: []string{"X-Upstream-Pod"}, // the pod sets it on every answer
	}
	g.createHTTPRoute(t, ns, "web", []string{host},
		rule(pathMatch(gatewayv1.PathMatchPathPrefix, "/"), backend("app")),
		filtered("/reqhdr", gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: edit}, backend("app")),
		filtered("/resphdr", gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: respEdit}, backend("app")),
		filtered("/old", gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{
			Scheme: ptr("https"), Hostname: ptr(gatewayv1.PreciseHostname("new.example")), StatusCode: ptr(301),
			Path: &gatewayv1.HTTPPathModifier{Type: gatewayv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr("/new")},
		}}),
		filtered("/moved", gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{
			Path: &gatewayv1.HTTPPathModifier{Type: gatewayv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr("/elsewhere")},
		}}),
		filtered("/rewrite", gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{
			Hostname: ptr(gatewayv1.PreciseHostname("rewritten.example")),
			Path:     &gatewayv1.HTTPPathModifier{Type: gatewayv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr("/v2")},
		}}, backend("app")),
		filtered("/full", gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{
			Path: &gatewayv1.HTTPPathModifier{Type: gatewayv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr("/replaced")},
		}}, backend("app")),
	)
	g.waitRouteCondition(t, "HTTPRoute web", g.httpRouteStatus(ns, "web"), "Accepted", metav1.ConditionTrue, "Accepted")
	g.waitServed(t, host, "/", pod)

	t.Run("RequestHeaderModifier", func(t *testing.T) {
		r := g.A.getWith(host, "/reqhdr", http.Header{"X-Set": {"client"}, "X-Add": {"client"}, "X-Remove": {"client"}})
		expectFrom(t, r, pod)
		for _, c := range []struct {
			name string
			want []string
		}{
			{"X-Set", []string{"by-route"}},
			{"X-Add", []string{"client", "by-route"}}, // appended (RFC 9110 §5.3: one field or two)
			{"X-Remove", nil},
		} {
			if got := podSaw(r.Body, c.name); !slices.Equal(got, c.want) {
				t.Errorf("the pod received %s: %q; want %q\n%s", c.name, got, c.want, r.Body)
			}
		}
	})
	t.Run("ResponseHeaderModifier", func(t *testing.T) {
		r := g.A.get(host, "/resphdr")
		expectFrom(t, r, pod)
		if got := r.Header.Get("X-Resp-Set"); got != "by-route" {
			t.Errorf("X-Resp-Set = %q; want by-route", got)
		}
		if got := r.Header.Get("X-Resp-Add"); got != "by-route" {
			t.Errorf("X-Resp-Add = %q; want by-route", got)
		}
		if got := r.Header.Values("X-Upstream-Pod"); len(got) != 0 {
			t.Errorf("X-Upstream-Pod = %q; want it removed by the route", got)
		}
	})
	noFollow := &http.Client{Transport: plainClient.Transport, Timeout: plainClient.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		name, path string
		status     int
		location   string
	}{
		// ReplacePrefixMatch keeps what follows the prefix; https without a port: 443,
		// which the Location leaves out (HTTPRequestRedirectFilter.port).
		{"RequestRedirect scheme, hostname, prefix, 301", "/old/page", 301, "https://new.example/new/page"},
		// No scheme: the request's; no port: the listener's; 302 by default.
		{"RequestRedirect full path, defaults", "/moved/x", 302, "http://" + host + ":" + listenerPort + "/elsewhere"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := g.A.getVia(noFollow, host, c.path, nil)
			if r.Err != nil || r.Status != c.status || r.Header.Get("Location") != c.location {
				t.Errorf("GET %s: %d %v Location %q; want %d to %s", c.path, r.Status, r.Err, r.Header.Get("Location"), c.status, c.location)
			}
			if strings.Contains(r.Body, "pod=") {
				t.Errorf("GET %s reached the pod (%q); want a redirect from agimo only", c.path, r.Body)
			}
		})
	}
	for _, c := range []struct{ name, path, sawHost, sawPath string }{
		{"URLRewrite hostname and prefix", "/rewrite/x", "rewritten.example", "/v2/x"},
		{"URLRewrite full path", "/full/a/b", host, "/replaced"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := g.A.get(host, c.path)
			expectFrom(t, r, pod)
			if want := fmt.Sprintf(" host=%s path=%s ", c.sawHost, c.sawPath); !strings.Contains(r.Body, want) {
				t.Errorf("GET %s: the pod saw %q; want%s", c.path, r.Body, want)
			}
		})
	}
}

// Issue 12: weighted backendRefs split one rule's traffic in proportion to their
// weights (HTTPBackendRef.weight), and a backend of weight 0 gets none. 400 requests at
// 3:1: the share of the lighter backend is 0.25, within 0.1 (4.6 standard deviations of
// a fair split, so a correct split fails about once in 250 000 runs).
func TestGatewayHTTPRouteWeights(t *testing.T) {
	ns := newNamespace(t)
	g := startGateway(t, ns, gatewayOpts{})
	heavy, light := startPod(t, "heavy-0"), startPod(t, "light-0")
	warmWorkload(t, ns, "heavy", heavy)
	warmWorkload(t, ns, "light", light)
	// Never ready: a request sent there would park and time out with a 503 in 1s.
	zero := createWorkload(t, ns, "zero", "deployment")
	svc, err := env.client.CoreV1().Services(ns).Get(ctx(t), zero.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Annotations = map[string]string{"agimo.dev/timeout": "1s"}
	if _, err := env.client.CoreV1().Services(ns).Update(ctx(t), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	host := "split." + ns + ".e2e"
	g.createHTTPRoute(t, ns, "split", []string{host}, gatewayv1.HTTPRouteRule{
		BackendRefs: []gatewayv1.HTTPBackendRef{weighted(backend("heavy"), 3), weighted(backend("light"), 1), weighted(backend("zero"), 0)},
	})
	g.waitRouteCondition(t, "HTTPRoute split", g.httpRouteStatus(ns, "split"), "Accepted", metav1.ConditionTrue, "Accepted")
	waitFor(t, 30*time.Second, "the split route served", func() (bool, string) {
		r := g.A.get(host, "/")
		return r.Status == 200, fmt.Sprintf("%d %v %q", r.Status, r.Err, r.Body)
	})

	const n = 400
	counts := map[string]int{}
	for i := range n {
		r := g.A.get(host, fmt.Sprintf("/r%d", i))
		switch {
		case r.Err == nil && r.Status == 200 && strings.Contains(r.Body, "pod="+heavy.Name+" "):
			counts[heavy.Name]++
		case r.Err == nil && r.Status == 200 && strings.Contains(r.Body, "pod="+light.Name+" "):
			counts[light.Name]++
		default:
			t.Fatalf("request %d: %d %v %q; want 200 from %s or %s (weight 0 gets nothing)", i, r.Status, r.Err, r.Body, heavy.Name, light.Name)
		}
	}
	share := float64(counts[light.Name]) / n
	t.Logf("weights 3:1:0 over %d requests: %v (light share %.3f)", n, counts, share)
	if math.Abs(share-0.25) > 0.1 {
		t.Errorf("share of the weight-1 backend = %.3f (%v); want 0.25 ± 0.1", share, counts)
	}
}

// podSaw returns the values of request header name that the upstream reported in body
// (its "hdr Name=v1,v2" lines), split at commas; nil if it got no such header.
func podSaw(body, name string) []string {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "hdr "+name+"="); ok {
			var vals []string
			for _, x := range strings.Split(v, ",") {
				vals = append(vals, strings.TrimSpace(x))
			}
			return vals
		}
	}
	return nil
}
