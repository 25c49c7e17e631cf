//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Issue 12: the status Agimo writes back, as every implementation does: GatewayClass
// Accepted; Gateway Accepted and Programmed, its listener's conditions and attachedRoutes,
// and its addresses (--publish-address); each route's parent status with Accepted and
// ResolvedRefs, and the reason when false: a route from a namespace the listener does not
// admit (NotAllowedByListeners), a route whose hostnames the listener's does not match
// (NoMatchingListenerHostname), a backendRef to a missing Service (BackendNotFound, and
// 500 for its requests, as the spec requires). Rejected routes serve nothing.
func TestGatewayStatus(t *testing.T) {
	ns, foreignNS := newNamespace(t), newNamespace(t)
	g := startGateway(t, ns, gatewayOpts{hostname: "*." + ns + ".e2e",
		agimo: agimoOpts{args: []string{"--publish-address", "192.0.2.10"}}})
	pod := startPod(t, "app-0")
	warmWorkload(t, ns, "app", pod)
	root := pathMatch(gatewayv1.PathMatchPathPrefix, "/")

	web, missing := "web."+ns+".e2e", "missing."+ns+".e2e"
	g.createHTTPRoute(t, ns, "web", []string{web}, rule(root, backend("app")))
	g.createHTTPRoute(t, ns, "missing", []string{missing}, rule(root, backend("nosuch")))
	// allowedRoutes defaults to the Gateway's own namespace.
	g.createHTTPRoute(t, foreignNS, "foreign", []string{"foreign." + ns + ".e2e"}, rule(root, backend("app")))
	g.createHTTPRoute(t, ns, "elsewhere", []string{"www.elsewhere.example"}, rule(root, backend("app")))

	waitCondition(t, "GatewayClass "+g.Class, func(c context.Context) (int64, []metav1.Condition, error) {
		gc, err := g.GW.GatewayV1().GatewayClasses().Get(c, g.Class, metav1.GetOptions{})
		if err != nil {
			return 0, nil, err
		}
		return gc.Generation, gc.Status.Conditions, nil
	}, "Accepted", metav1.ConditionTrue, "Accepted")
	gateway := func(c context.Context) (*gatewayv1.Gateway, error) {
		return g.GW.GatewayV1().Gateways(ns).Get(c, "gw", metav1.GetOptions{})
	}
	for _, typ := range []string{"Accepted", "Programmed"} {
		waitCondition(t, "Gateway gw", func(c context.Context) (int64, []metav1.Condition, error) {
			gw, err := gateway(c)
			if err != nil {
				return 0, nil, err
			}
			return gw.Generation, gw.Status.Conditions, nil
		}, typ, metav1.ConditionTrue, typ)
	}

	for _, c := range []struct {
		route  string
		status routeStatus
		typ    string
		want   metav1.ConditionStatus
		reason string
	}{
		{"web", g.httpRouteStatus(ns, "web"), "Accepted", metav1.ConditionTrue, "Accepted"},
		{"web", g.httpRouteStatus(ns, "web"), "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"},
		{"missing", g.httpRouteStatus(ns, "missing"), "Accepted", metav1.ConditionTrue, "Accepted"},
		{"missing", g.httpRouteStatus(ns, "missing"), "ResolvedRefs", metav1.ConditionFalse, "BackendNotFound"},
		{"foreign", g.httpRouteStatus(foreignNS, "foreign"), "Accepted", metav1.ConditionFalse, "NotAllowedByListeners"},
		{"elsewhere", g.httpRouteStatus(ns, "elsewhere"), "Accepted", metav1.ConditionFalse, "NoMatchingListenerHostname"},
	} {
		g.waitRouteCondition(t, "HTTPRoute "+c.route, c.status, c.typ, c.want, c.reason)
	}

	// The listener: its conditions, and the routes attached to it (accepted ones: web and
	// missing); the Gateway's addresses.
	waitFor(t, 30*time.Second, "listener http: Accepted, Programmed, ResolvedRefs, 2 attached routes; address 192.0.2.10", func() (bool, string) {
		gw, err := gateway(ctx(t))
		if err != nil {
			return false, err.Error()
		}
		var l *gatewayv1.ListenerStatus
		for i := range gw.Status.Listeners {
			if gw.Status.Listeners[i].Name == "http" {
				l = &gw.Status.Listeners[i]
			}
		}
		if l == nil {
			return false, fmt.Sprintf("no listener status named http: %+v", gw.Status.Listeners)
		}
		for _, typ := range []string{"Accepted", "Programmed", "ResolvedRefs"} {
			if c := meta.FindStatusCondition(l.Conditions, typ); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != gw.Generation {
				return false, fmt.Sprintf("listener condition %s: %+v", typ, c)
			}
		}
		if l.AttachedRoutes != 2 {
			return false, fmt.Sprintf("attachedRoutes %d", l.AttachedRoutes)
		}
		for _, a := range gw.Status.Addresses {
			if a.Value == "192.0.2.10" && (a.Type == nil || *a.Type == gatewayv1.IPAddressType) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("addresses %+v", gw.Status.Addresses)
	})

	g.waitServed(t, web, "/", pod)
	for _, c := range []struct {
		host, why string
		want      int
	}{
		{missing, "its only backend is missing", 500},
		{"foreign." + ns + ".e2e", "its route is not allowed by the listener", 404},
		{"www.elsewhere.example", "no listener hostname matches its route's", 404},
	} {
		if r := g.A.get(c.host, "/"); r.Err != nil || r.Status != c.want {
			t.Errorf("GET %s (%s): %d %v %q; want %d", c.host, c.why, r.Status, r.Err, r.Body, c.want)
		}
	}
}

// Issue 12: a backendRef to a Service in another namespace is refused until that
// namespace grants it with a ReferenceGrant (ResolvedRefs False, reason RefNotPermitted,
// and a 500 for the rule's requests as the spec requires), allowed once the grant exists,
// and refused again once it is deleted.
func TestGatewayReferenceGrant(t *testing.T) {
	ns, other := newNamespace(t), newNamespace(t)
	g := startGateway(t, ns, gatewayOpts{})
	pod := startPod(t, "backend-0")
	warmWorkload(t, other, "backend", pod)
	host := "xns." + ns + ".e2e"
	g.createHTTPRoute(t, ns, "xns", []string{host}, rule(pathMatch(gatewayv1.PathMatchPathPrefix, "/"), backend("backend", other)))
	status := g.httpRouteStatus(ns, "xns")
	refused := func(when string) {
		t.Helper()
		g.waitRouteCondition(t, "HTTPRoute xns "+when, status, "ResolvedRefs", metav1.ConditionFalse, "RefNotPermitted")
		waitFor(t, 30*time.Second, "500 for the refused backend "+when, func() (bool, string) {
			r := g.A.get(host, "/")
			return r.Err == nil && r.Status == 500, fmt.Sprintf("%d %v %q", r.Status, r.Err, r.Body)
		})
	}
	refused("without a ReferenceGrant")
	g.waitRouteCondition(t, "HTTPRoute xns", status, "Accepted", metav1.ConditionTrue, "Accepted")

	grants := g.GW.GatewayV1().ReferenceGrants(other)
	_, err := grants.Create(ctx(t), &gatewayv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "routes-of-" + ns},
		Spec: gatewayv1.ReferenceGrantSpec{
			From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Namespace: gatewayv1.Namespace(ns)}},
			To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitRouteCondition(t, "HTTPRoute xns with a ReferenceGrant", status, "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")
	g.waitServed(t, host, "/", pod)

	if err := grants.Delete(ctx(t), "routes-of-"+ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	refused("after the ReferenceGrant was deleted")
}

// Issue 12: an HTTPS listener on Agimo's --tls-port terminates TLS with the certificate its
// certificateRefs name (a kubernetes.io/tls Secret beside the Gateway) for the routes
// attached to it, over HTTP/1.1 and HTTP/2 (ALPN); the pod sees X-Forwarded-Proto https.
func TestGatewayHTTPSListener(t *testing.T) {
	ns := newNamespace(t)
	ca := newCA(t, "gateway CA")
	cert := ca.issue(t, "*."+ns+".e2e")
	createTLSSecret(t, ns, "wildcard-tls", cert)
	g := startGateway(t, ns, gatewayOpts{hostname: "*." + ns + ".e2e", tlsSecret: "wildcard-tls"})
	pod := startPod(t, "app-0")
	warmWorkload(t, ns, "app", pod)
	host := "secure." + ns + ".e2e"
	g.createHTTPRoute(t, ns, "secure", []string{host}, rule(pathMatch(gatewayv1.PathMatchPathPrefix, "/"), backend("app")))
	g.waitRouteCondition(t, "HTTPRoute secure", g.httpRouteStatus(ns, "secure"), "Accepted", metav1.ConditionTrue, "Accepted")

	cacert := ca.file(t)
	waitFor(t, 30*time.Second, host+" served over TLS", func() (bool, string) {
		r := curl(append([]string{"--cacert", cacert}, g.A.httpsURL(host, "/")...)...)
		return r.Err == nil && r.Status == 200, fmt.Sprintf("%d %v %q", r.Status, r.Err, r.Body)
	})
	expectCurlFrom(t, curl(append([]string{"--cacert", cacert, "--http1.1"}, g.A.httpsURL(host, "/h1")...)...), pod, "1.1", "https")
	expectCurlFrom(t, curl(append([]string{"--cacert", cacert, "--http2"}, g.A.httpsURL(host, "/h2")...)...), pod, "2", "https")
	if got := servedCert(t, g.A.TLSAddr, host); !got.Equal(cert.leaf) {
		t.Errorf("SNI %s: served %v; want the listener's certificate %v", host, got.DNSNames, cert.leaf.DNSNames)
	}
}
