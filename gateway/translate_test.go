package gateway

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/agimo/agimo/conf"
)

// summary renders entries: "host path matches -> target wN".
func summary(ss []conf.Service) []string {
	var out []string
	for _, s := range ss {
		to := fmt.Sprintf("%s/%s:%d", s.Namespace, s.ServiceName, s.ServicePort)
		switch {
		case s.Fixed != 0:
			to = fmt.Sprint(s.Fixed)
		case s.Filters != nil && s.Filters.Redirect != nil:
			to = "redirect"
		}
		line := s.Host + " " + rulePath(&s)
		if m := s.MatchKey(); m != "" {
			line += " " + m
		}
		line += " -> " + to
		if s.Rule != "" {
			line += fmt.Sprintf(" w%d", s.Weight)
		}
		out = append(out, line)
	}
	return out
}

func i32(v int32) *int32 { return &v }

func TestTranslateHTTPRoute(t *testing.T) {
	web := backendRef("", "web", 80, nil)
	prefix := func(p string) gwv1.HTTPRouteMatch { return pathMatch(gwv1.PathMatchPathPrefix, p) }
	rule := func(ms []gwv1.HTTPRouteMatch, fs []gwv1.HTTPRouteFilter, bs ...gwv1.HTTPBackendRef) gwv1.HTTPRouteRule {
		return gwv1.HTTPRouteRule{Matches: ms, Filters: fs, BackendRefs: bs}
	}
	get := gwv1.HTTPMethodGet
	regex := gwv1.HeaderMatchRegularExpression
	grant := &gwv1beta1.ReferenceGrant{ObjectMeta: om("other", "allow", 0), Spec: gwv1beta1.ReferenceGrantSpec{
		From: []gwv1beta1.ReferenceGrantFrom{{Group: Group, Kind: "HTTPRoute", Namespace: "apps"}},
		To:   []gwv1beta1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
	}}
	for _, tt := range []struct {
		name         string
		objs         []any
		want         []string
		accepted     string // the route "r"'s Accepted; "" = True/Accepted
		resolved     string // its ResolvedRefs; "" = True/ResolvedRefs
		partial      string // its PartiallyInvalid, "" = none
		wantConflict bool
	}{
		{name: "prefix and catch-all host",
			objs: []any{newHTTPRoute("r", 1, nil, rule([]gwv1.HTTPRouteMatch{prefix("/api/")}, nil, web))},
			want: []string{"* /api -> apps/web:80 w1"}},
		{name: "no matches is every path",
			objs: []any{newHTTPRoute("r", 1, []string{"A.example"}, rule(nil, nil, web))},
			want: []string{"a.example / -> apps/web:80 w1"}},
		{name: "exact, method, headers, query",
			objs: []any{newHTTPRoute("r", 1, []string{"a.example"}, rule([]gwv1.HTTPRouteMatch{{
				Path:        &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchExact), Value: ptr("/x")},
				Method:      &get,
				Headers:     []gwv1.HTTPHeaderMatch{{Name: "X-Env", Value: "canary"}, {Name: "X-Re", Value: "^a", Type: &regex}},
				QueryParams: []gwv1.HTTPQueryParamMatch{{Name: "v", Value: "2"}},
			}}, nil, web))},
			want: []string{`a.example =/x method=GET headers["x-env"="canary","x-re"~"^a"] query["v"="2"] -> apps/web:80 w1`}},
		{name: "regular expression path is unsupported",
			objs:    []any{newHTTPRoute("r", 1, nil, rule([]gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchRegularExpression, "/a.*"), prefix("/b")}, nil, web))},
			want:    []string{"* /b -> apps/web:80 w1"},
			partial: "True/UnsupportedValue"},
		{name: "weights split one rule; weight 0 gets nothing",
			objs: []any{newHTTPRoute("r", 1, nil, rule(nil, nil, backendRef("", "web", 80, i32(1)), backendRef("", "api", 8080, i32(3)), backendRef("", "web", 81, i32(0))))},
			want: []string{"* / -> apps/web:80 w1", "* / -> apps/api:8080 w3"}},
		{name: "all weights 0: 500",
			objs: []any{newHTTPRoute("r", 1, nil, rule(nil, nil, backendRef("", "web", 80, i32(0))))},
			want: []string{"* / -> 500"}},
		{name: "no backendRefs: 500",
			objs: []any{newHTTPRoute("r", 1, nil, rule(nil, nil))},
			want: []string{"* / -> 500"}},
		{name: "missing Service: BackendNotFound, its share 500",
			objs:     []any{newHTTPRoute("r", 1, nil, rule(nil, nil, web, backendRef("", "gone", 80, nil)))},
			want:     []string{"* / -> apps/web:80 w1", "* / -> 500 w1"},
			resolved: "False/BackendNotFound"},
		{name: "cross-namespace without ReferenceGrant: RefNotPermitted, 500",
			objs:     []any{svc("other", "x", nil), newHTTPRoute("r", 1, nil, rule(nil, nil, backendRef("other", "x", 80, nil)))},
			want:     []string{"* / -> 500 w1"},
			resolved: "False/RefNotPermitted"},
		{name: "cross-namespace with ReferenceGrant",
			objs: []any{svc("other", "x", nil), grant, newHTTPRoute("r", 1, nil, rule(nil, nil, backendRef("other", "x", 80, nil)))},
			want: []string{"* / -> other/x:80 w1"}},
		{name: "not a Service: InvalidKind",
			objs: []any{newHTTPRoute("r", 1, nil, rule(nil, nil, gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
				Group: ptr(gwv1.Group("example.com")), Kind: ptr(gwv1.Kind("Bucket")), Name: "b"}}}))},
			want:     []string{"* / -> 500 w1"},
			resolved: "False/InvalidKind"},
		{name: "redirect answers alone",
			objs: []any{newHTTPRoute("r", 1, nil, rule(nil, []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestRedirect,
				RequestRedirect: &gwv1.HTTPRequestRedirectFilter{Scheme: ptr("https"), StatusCode: ptr(301)}}}))},
			want: []string{"* / -> redirect"}},
		{name: "unsupported filter: 500",
			objs: []any{newHTTPRoute("r", 1, nil, rule(nil, []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestMirror,
				RequestMirror: &gwv1.HTTPRequestMirrorFilter{BackendRef: gwv1.BackendObjectReference{Name: "web"}}}}, web))},
			want:    []string{"* / -> 500"},
			partial: "True/UnsupportedValue"},
		{name: "the older route wins a conflict",
			objs: []any{newHTTPRoute("old", 1, nil, rule(nil, nil, backendRef("", "api", 80, nil))),
				newHTTPRoute("r", 2, nil, rule([]gwv1.HTTPRouteMatch{prefix("/")}, nil, web), rule([]gwv1.HTTPRouteMatch{{Method: &get}}, nil, web))},
			want:         []string{"* / -> apps/api:80 w1", "* / method=GET headers[] query[] -> apps/web:80 w1"},
			wantConflict: true},
		{name: "sectionName without such listener: NoMatchingParent",
			objs: []any{func() *gwv1.HTTPRoute {
				r := newHTTPRoute("r", 1, nil, rule(nil, nil, web))
				r.Spec.ParentRefs = []gwv1.ParentReference{parentRef("nope")}
				return r
			}()},
			accepted: "False/NoMatchingParent"},
		{name: "listener hostname intersects",
			objs: []any{func() *gwv1.Gateway {
				g := infraGateway()
				g.Name, g.Spec.Listeners = "wild", g.Spec.Listeners[:1]
				g.Spec.Listeners[0].Hostname = ptr(gwv1.Hostname("*.example.com"))
				return g
			}(), func() *gwv1.HTTPRoute {
				r := newHTTPRoute("r", 1, []string{"a.example.com", "b.c.example.com", "other.org"}, rule(nil, nil, web))
				r.Spec.ParentRefs[0].Name = "wild"
				return r
			}()},
			want: []string{"a.example.com / -> apps/web:80 w1", "b.c.example.com / -> apps/web:80 w1"}},
		{name: "no hostname in common: NoMatchingListenerHostname",
			objs: []any{func() *gwv1.Gateway {
				g := infraGateway()
				g.Name, g.Spec.Listeners = "wild", g.Spec.Listeners[:1]
				g.Spec.Listeners[0].Hostname = ptr(gwv1.Hostname("*.example.com"))
				return g
			}(), func() *gwv1.HTTPRoute {
				r := newHTTPRoute("r", 1, []string{"other.org"}, rule(nil, nil, web))
				r.Spec.ParentRefs[0].Name = "wild"
				return r
			}()},
			accepted: "False/NoMatchingListenerHostname"},
		{name: "allowedRoutes Same: NotAllowedByListeners",
			objs: []any{func() *gwv1.Gateway {
				g := infraGateway()
				g.Name = "same"
				for i := range g.Spec.Listeners {
					g.Spec.Listeners[i].AllowedRoutes = nil
				}
				return g
			}(), func() *gwv1.HTTPRoute {
				r := newHTTPRoute("r", 1, nil, rule(nil, nil, web))
				r.Spec.ParentRefs[0].Name = "same"
				return r
			}()},
			accepted: "False/NotAllowedByListeners"},
		{name: "allowedRoutes Selector matching the route's namespace",
			objs: []any{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"team": "a"}}}, func() *gwv1.Gateway {
				g := infraGateway()
				g.Name, g.Spec.Listeners = "sel", g.Spec.Listeners[:1]
				from := gwv1.NamespacesFromSelector
				g.Spec.Listeners[0].AllowedRoutes = &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &from,
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}}
				return g
			}(), func() *gwv1.HTTPRoute {
				r := newHTTPRoute("r", 1, nil, rule(nil, nil, web))
				r.Spec.ParentRefs[0].Name = "sel"
				return r
			}()},
			want: []string{"* / -> apps/web:80 w1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld().add(tt.objs...)
			res := Translate(baseConfig(t), w.Snapshot, ports, nil, nil)
			if got := summary(res.Services); !slices.Equal(got, tt.want) {
				t.Errorf("entries:\n got %q\nwant %q", got, tt.want)
			}
			for _, c := range []struct{ typ, want string }{
				{"Accepted", cmpOr(tt.accepted, "True/Accepted")},
				{"ResolvedRefs", cmpOr(tt.resolved, "True/ResolvedRefs")},
				{"PartiallyInvalid", cmpOr(tt.partial, "<none>")},
			} {
				if got := condString(routeCond(res, "HTTPRoute", "r", c.typ)); got != c.want {
					t.Errorf("%s = %s; want %s", c.typ, got, c.want)
				}
			}
			conflicted := routeCond(res, "HTTPRoute", "r", "Conflicted")
			if (conflicted != nil) != tt.wantConflict {
				t.Errorf("Conflicted = %s; want present %v", condString(conflicted), tt.wantConflict)
			}
			if c := routeCond(res, "HTTPRoute", "r", "Accepted"); c != nil && c.ObservedGeneration != 1 {
				t.Errorf("observedGeneration = %d; want 1", c.ObservedGeneration)
			}
		})
	}
}

// TestTranslateFilters: the Core filters become the entry's Filters, a
// backendRef's own folded into its entry.
func TestTranslateFilters(t *testing.T) {
	hdr := &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "X-A", Value: "1"}}, Remove: []string{"X-B"}}
	rewrite := &gwv1.HTTPURLRewriteFilter{Hostname: ptr(gwv1.PreciseHostname("up.example")),
		Path: &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr("/v2")}}
	b := backendRef("", "web", 80, nil)
	b.Filters = []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: hdr}}
	r := newHTTPRoute("r", 1, nil, gwv1.HTTPRouteRule{
		Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, "/v1"), pathMatch(gwv1.PathMatchExact, "/exact")},
		Filters: []gwv1.HTTPRouteFilter{
			{Type: gwv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: hdr},
			{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: rewrite},
		},
		BackendRefs: []gwv1.HTTPBackendRef{b},
	}, gwv1.HTTPRouteRule{
		Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, "/old")},
		Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gwv1.HTTPRequestRedirectFilter{
			Hostname: ptr(gwv1.PreciseHostname("new.example")), Port: ptr(gwv1.PortNumber(8443)),
			Path: &gwv1.HTTPPathModifier{Type: gwv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr("/")}}}},
	})
	res := Translate(baseConfig(t), newWorld().add(r).Snapshot, ports, nil, nil)
	if got, want := summary(res.Services), []string{"* /v1 -> apps/web:80 w1", "* /old -> redirect"}; !slices.Equal(got, want) {
		t.Fatalf("entries = %q; want %q (the exact match cannot ReplacePrefixMatch)", got, want)
	}
	f := res.Services[0].Filters
	if f == nil || f.RequestHeaders == nil || f.RequestHeaders.Set[0] != (conf.Header{Name: "X-A", Value: "1"}) || f.RequestHeaders.Remove[0] != "X-B" ||
		f.ResponseHeaders == nil || f.Rewrite == nil || f.Rewrite.Hostname != "up.example" || *f.Rewrite.Path != (conf.PathModifier{ReplacePrefixMatch: "/v2", Prefix: true}) {
		t.Errorf("filters = %+v; want request and response header edits and the rewrite", f)
	}
	rd := res.Services[1].Filters.Redirect
	if rd.Hostname != "new.example" || rd.Port != 8443 || rd.StatusCode != 302 || rd.Path.ReplaceFullPath != "/" || res.Services[1].ServiceName != "" {
		t.Errorf("redirect = %+v; want new.example:8443, 302, path /, no backend", rd)
	}
	if got := condString(routeCond(res, "HTTPRoute", "r", "PartiallyInvalid")); got != "True/UnsupportedValue" {
		t.Errorf("PartiallyInvalid = %s; want True/UnsupportedValue (the exact match)", got)
	}
}

func TestTranslateGRPCRoute(t *testing.T) {
	exact := gwv1.GRPCMethodMatchExact
	gr := &gwv1.GRPCRoute{ObjectMeta: om("apps", "g", 1), Spec: gwv1.GRPCRouteSpec{
		CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef("http")}},
		Hostnames:       []gwv1.Hostname{"grpc.example"},
		Rules: []gwv1.GRPCRouteRule{{
			Matches: []gwv1.GRPCRouteMatch{
				{Method: &gwv1.GRPCMethodMatch{Type: &exact, Service: ptr("pkg.Echo"), Method: ptr("Say")}},
				{Method: &gwv1.GRPCMethodMatch{Service: ptr("pkg.Other")}, Headers: []gwv1.GRPCHeaderMatch{{Name: "x-tenant", Value: "a"}}},
				{Method: &gwv1.GRPCMethodMatch{Method: ptr("Say")}},
			},
			BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "api", Port: ptr(gwv1.PortNumber(9000))}}}},
		}},
	}}
	res := Translate(baseConfig(t), newWorld().add(gr).Snapshot, ports, nil, nil)
	want := []string{"grpc.example =/pkg.Echo/Say -> apps/api:9000 w1", `grpc.example /pkg.Other method= headers["x-tenant"="a"] query[] -> apps/api:9000 w1`}
	if got := summary(res.Services); !slices.Equal(got, want) {
		t.Fatalf("entries = %q; want %q", got, want)
	}
	for _, s := range res.Services {
		if s.Protocol != conf.ProtocolH2C || s.Source != "GRPCRoute apps/g" {
			t.Errorf("protocol %q, source %q; want h2c, GRPCRoute apps/g", s.Protocol, s.Source)
		}
	}
	if got := condString(routeCond(res, "GRPCRoute", "g", "PartiallyInvalid")); got != "True/UnsupportedValue" {
		t.Errorf("PartiallyInvalid = %s; want True/UnsupportedValue (a method without service)", got)
	}
}

// TestTranslateGateway: class and Gateway conditions, listener
// verdicts, attached routes, certificates and addresses.
func TestTranslateGateway(t *testing.T) {
	w := newWorld()
	g := infraGateway()
	g.Name = "bad"
	ref := gwv1.Namespace("elsewhere")
	g.Spec.Listeners = append(g.Spec.Listeners,
		gwv1.Listener{Name: "wrong-port", Port: 80, Protocol: gwv1.HTTPProtocolType},
		gwv1.Listener{Name: "tcp", Port: 8080, Protocol: gwv1.TCPProtocolType},
		gwv1.Listener{Name: "dup", Port: 8080, Protocol: gwv1.HTTPProtocolType},
		gwv1.Listener{Name: "far-cert", Port: 8443, Protocol: gwv1.HTTPSProtocolType, Hostname: ptr(gwv1.Hostname("far.example")),
			TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "c", Namespace: &ref}}}},
		gwv1.Listener{Name: "no-cert", Port: 8443, Protocol: gwv1.HTTPSProtocolType, Hostname: ptr(gwv1.Hostname("none.example")),
			TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "missing"}}}},
		gwv1.Listener{Name: "kinds", Port: 8080, Protocol: gwv1.HTTPProtocolType, Hostname: ptr(gwv1.Hostname("k.example")),
			AllowedRoutes: &gwv1.AllowedRoutes{Kinds: []gwv1.RouteGroupKind{{Kind: "TCPRoute"}, {Kind: "HTTPRoute"}}}},
	)
	other := &gwv1.Gateway{ObjectMeta: om("infra", "theirs", 0), Spec: gwv1.GatewaySpec{GatewayClassName: "nginx"}}
	w.add(g, other, svc("elsewhere", "x", nil), tlsSecret("elsewhere", "c"),
		newHTTPRoute("r", 1, nil, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backendRef("", "web", 80, nil)}}))
	addrs := []gwv1.GatewayStatusAddress{{Type: ptr(gwv1.IPAddressType), Value: "192.0.2.1"}}
	res := Translate(baseConfig(t), w.Snapshot, ports, addrs, nil)

	if c := res.Status.ClassConds; res.Status.Class == nil || len(c) != 1 || condString(&c[0]) != "True/Accepted" {
		t.Errorf("class conditions = %+v; want Accepted", c)
	}
	if _, ok := res.Status.Gateways[nn("infra", "theirs")]; ok {
		t.Error("status for another class's Gateway; want none")
	}
	good := res.Status.Gateways[nn("infra", "gw")]
	if condString(findCond(good.Conditions, "Accepted")) != "True/Accepted" || condString(findCond(good.Conditions, "Programmed")) != "True/Programmed" ||
		len(good.Addresses) != 1 || good.Addresses[0].Value != "192.0.2.1" {
		t.Errorf("gateway infra/gw status = %+v; want Accepted, Programmed, address 192.0.2.1", good)
	}
	if n := good.Listeners[0].AttachedRoutes; n != 1 || len(good.Listeners[0].SupportedKinds) != 2 {
		t.Errorf("listener http: %d routes, kinds %v; want 1, HTTPRoute and GRPCRoute", n, good.Listeners[0].SupportedKinds)
	}
	bad := res.Status.Gateways[nn("infra", "bad")]
	if got := condString(findCond(bad.Conditions, "Accepted")); got != "True/ListenersNotValid" {
		t.Errorf("gateway infra/bad Accepted = %s; want True/ListenersNotValid", got)
	}
	for _, c := range []struct{ listener, typ, want string }{
		{"http", "Accepted", "True/Accepted"},
		{"wrong-port", "Accepted", "False/PortUnavailable"},
		{"tcp", "Accepted", "False/UnsupportedProtocol"},
		{"dup", "Conflicted", "True/HostnameConflict"},
		{"dup", "Accepted", "False/HostnameConflict"},
		{"far-cert", "ResolvedRefs", "False/RefNotPermitted"},
		{"far-cert", "Programmed", "False/Invalid"},
		{"no-cert", "ResolvedRefs", "False/InvalidCertificateRef"},
		{"kinds", "ResolvedRefs", "False/InvalidRouteKinds"},
		{"https", "ResolvedRefs", "True/ResolvedRefs"},
	} {
		i := slices.IndexFunc(bad.Listeners, func(l gwv1.ListenerStatus) bool { return string(l.Name) == c.listener })
		if got := condString(findCond(bad.Listeners[i].Conditions, c.typ)); got != c.want {
			t.Errorf("listener %s %s = %s; want %s", c.listener, c.typ, got, c.want)
		}
	}
	if got := bad.Listeners[len(bad.Listeners)-1].SupportedKinds; len(got) != 1 || got[0].Kind != "HTTPRoute" {
		t.Errorf("supportedKinds = %v; want HTTPRoute only", got)
	}
	if !slices.Equal(res.TLSSecrets, []string{"infra/cert"}) {
		t.Errorf("TLSSecrets = %q; want [infra/cert]", res.TLSSecrets)
	}

	// A class of another controller is not served at all.
	w.Classes[0].Spec.ControllerName = "example.com/other"
	if res := Translate(baseConfig(t), w.Snapshot, ports, nil, nil); res.Status.Class != nil || len(res.Services) != 0 {
		t.Errorf("another controller's class: %d entries, class %v; want nothing", len(res.Services), res.Status.Class)
	}
}

// TestTranslatePrecedence: the config file's entries come first; of an
// Ingress and a route, the older; the loser says so; backend annotations
// give scale-to-zero settings.
func TestTranslatePrecedence(t *testing.T) {
	toml := conf.Service{Host: "a.example", Type: "deployment", Namespace: "apps", Name: "t", ServiceName: "t", ServicePort: 80, Paths: []string{"/toml"}}
	older := conf.Service{Host: "a.example", Type: "deployment", Namespace: "apps", Name: "i", ServiceName: "i", ServicePort: 80, Paths: []string{"/old-ing"}}
	older.Source, older.Created = "Ingress apps/old", t0
	younger := older
	younger.Paths, younger.Source, younger.Created = []string{"/new-ing"}, "Ingress apps/new", t0.Add(time.Hour)
	base := baseConfig(t, toml, older, younger)
	rule := func(p string) gwv1.HTTPRouteRule {
		return gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, p)},
			BackendRefs: []gwv1.HTTPBackendRef{backendRef("", "web", 80, nil)}}
	}
	w := newWorld().add(svc("apps", "web", map[string]string{"agimo.dev/workload": "deployment/web-d", "agimo.dev/wake": "true"}),
		newHTTPRoute("r", 60, []string{"a.example"}, rule("/toml"), rule("/old-ing"), rule("/new-ing")))
	res := Translate(base, w.Snapshot, ports, nil, nil)
	if got, want := summary(res.Services), []string{"a.example /new-ing -> apps/web:80 w1"}; !slices.Equal(got, want) {
		t.Fatalf("entries = %q; want %q", got, want)
	}
	if !slices.Equal(res.Displaced, []int{2}) {
		t.Errorf("displaced = %v; want [2] (the younger Ingress)", res.Displaced)
	}
	if s := res.Services[0]; !s.Wake || s.Name != "web-d" || s.Type != conf.KindDeployment {
		t.Errorf("settings = wake %v, %s/%s; want wake, deployment/web-d", s.Wake, s.Type, s.Name)
	}
	c := routeCond(res, "HTTPRoute", "r", "Conflicted")
	if c == nil || !strings.Contains(c.Message, "the config file") || !strings.Contains(c.Message, "Ingress apps/old") {
		t.Errorf("Conflicted = %+v; want the config file and Ingress apps/old named", c)
	}
	if len(res.Problems) != 1 || res.Problems[0].Kind != "Ingress" || res.Problems[0].Name != "new" {
		t.Errorf("problems = %+v; want one on Ingress apps/new", res.Problems)
	}

	// A bad annotation keeps the previous settings.
	w.add(svc("apps", "web", map[string]string{"agimo.dev/wake": "maybe"}))
	res2 := Translate(base, w.Snapshot, ports, nil, res.Settings)
	if s := res2.Services[0]; !s.Wake || len(res2.Problems) != 2 {
		t.Errorf("bad annotation: wake %v, problems %+v; want previous settings kept and a BadAnnotation", s.Wake, res2.Problems)
	}
}

func TestIntersect(t *testing.T) {
	h := func(s string) *gwv1.Hostname { v := gwv1.Hostname(s); return &v }
	for _, tt := range []struct {
		listener *gwv1.Hostname
		route    []gwv1.Hostname
		want     []string
	}{
		{nil, nil, []string{"*"}},
		{h("a.example"), nil, []string{"a.example"}},
		{nil, []gwv1.Hostname{"B.example"}, []string{"b.example"}},
		{h("*.example"), []gwv1.Hostname{"a.example", "x.y.example", "example", "a.other"}, []string{"a.example", "x.y.example"}},
		{h("a.example"), []gwv1.Hostname{"*.example"}, []string{"a.example"}},
		{h("*.example"), []gwv1.Hostname{"*.a.example"}, []string{"*.a.example"}},
		{h("*.a.example"), []gwv1.Hostname{"*.example"}, []string{"*.a.example"}},
		{h("a.example"), []gwv1.Hostname{"b.example"}, nil},
	} {
		if got := intersect(tt.listener, tt.route); !slices.Equal(got, tt.want) {
			t.Errorf("intersect(%v, %q) = %q; want %q", tt.listener, tt.route, got, tt.want)
		}
	}
}
