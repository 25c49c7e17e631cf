//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// annotate sets annotations on the Service of w (its scale-to-zero settings for routes
// from the cluster, issue 12).
func (w workload) annotate(t *testing.T, kv map[string]string) {
	t.Helper()
	svc, err := env.client.CoreV1().Services(w.NS).Get(ctx(t), w.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	for k, v := range kv {
		svc.Annotations[k] = v
	}
	if _, err := env.client.CoreV1().Services(w.NS).Update(ctx(t), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Issue 12: a backend at zero replicas reached through an HTTPRoute is held for like a
// [[services]] entry: the request parks, the workload named by the Service's
// agimo.dev/workload annotation is woken (agimo.dev/wake), and the request is released
// when the pod is ready. Meanwhile the HTTPRoute is changed (a rule added): the change
// applies while the request stays parked.
func TestGatewayColdWake(t *testing.T) {
	ns := newNamespace(t)
	g := startGateway(t, ns, gatewayOpts{})
	hotPod, coldPod := startPod(t, "hot-0"), startPod(t, "cold-0")
	warmWorkload(t, ns, "hot", hotPod)
	cold := createWorkload(t, ns, "cold", "deployment")
	cold.annotate(t, map[string]string{"agimo.dev/workload": "deployment/cold", "agimo.dev/wake": "true"})

	host := "app." + ns + ".e2e"
	g.createHTTPRoute(t, ns, "app", []string{host},
		rule(pathMatch(gatewayv1.PathMatchPathPrefix, "/"), backend("hot")),
		rule(pathMatch(gatewayv1.PathMatchPathPrefix, "/cold"), backend("cold")))
	g.waitRouteCondition(t, "HTTPRoute app", g.httpRouteStatus(ns, "app"), "Accepted", metav1.ConditionTrue, "Accepted")
	g.waitServed(t, host, "/", hotPod)

	up := cold.watchScaleUp(t)
	parked := g.A.getAsync(host, "/cold/x")
	g.A.waitParked(t, host, 1)
	up.wait(t, 20*time.Second)

	// A hot change of the route while the request is parked: a rule added.
	routes := g.GW.GatewayV1().HTTPRoutes(ns)
	r, err := routes.Get(ctx(t), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Spec.Rules = append(r.Spec.Rules, rule(pathMatch(gatewayv1.PathMatchExact, "/cold/status"), backend("hot")))
	if _, err := routes.Update(ctx(t), r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the new table is live, /cold/status is /cold's and would park for the
	// service's whole timeout: wait for the live table (the status page) to have it.
	waitFor(t, 30*time.Second, "the live routes to have the exact path /cold/status", func() (bool, string) {
		_, v := g.A.statusJSON(t, host)
		var seen [][]string
		for _, rt := range v.Routes {
			if rt.Host == host && slices.Contains(rt.ExactPaths, "/cold/status") {
				return true, ""
			}
			seen = append(seen, rt.ExactPaths)
		}
		return false, fmt.Sprintf("exact paths %v", seen)
	})
	g.waitServed(t, host, "/cold/status", hotPod)
	if got := g.A.metric(t, series("agimo_parked_requests", host)); got != 1 {
		t.Errorf("parked on %s after the route changed = %v; want 1 (kept)", host, got)
	}

	cold.bootPod(t, coldPod)
	expectFrom(t, awaitResult(t, parked, 30*time.Second), coldPod)
	expectFrom(t, g.A.get(host, "/cold/y"), coldPod)
	if got := g.A.metric(t, series("agimo_wakeups_total", host)); got != 1 {
		t.Errorf("agimo_wakeups_total{host=%q} = %v; want 1", host, got)
	}
}

// Issue 12: a GRPCRoute to h2c backends (Service ports with appProtocol
// kubernetes.io/h2c): a method match and a method plus header match (the rule with more
// header matches wins when the methods tie), a call to a cold backend parked and released
// when its pod is ready, and UNIMPLEMENTED for a method no rule matches (GRPCRoute spec).
func TestGatewayGRPCRoute(t *testing.T) {
	ns := newNamespace(t)
	g := startGateway(t, ns, gatewayOpts{})
	cold := createWorkload(t, ns, "grpc", "deployment").withAppProtocol(t, "kubernetes.io/h2c")
	canary := createWorkload(t, ns, "canary", "deployment").withAppProtocol(t, "kubernetes.io/h2c")
	coldPod, canaryPod := startPodWith(t, "grpc-0", env.grpcapp), startPodWith(t, "canary-0", env.grpcapp)
	canary.warm(t, canaryPod)

	host := "grpc." + ns + ".e2e"
	unary := gatewayv1.GRPCRouteMatch{Method: &gatewayv1.GRPCMethodMatch{Type: ptr(gatewayv1.GRPCMethodMatchExact),
		Service: ptr("grpc.testing.TestService"), Method: ptr("UnaryCall")}}
	unaryCanary := unary
	unaryCanary.Headers = []gatewayv1.GRPCHeaderMatch{{Type: ptr(gatewayv1.GRPCHeaderMatchExact), Name: "x-variant", Value: "canary"}}
	to := func(svc string) []gatewayv1.GRPCBackendRef {
		b := gatewayv1.GRPCBackendRef{}
		b.Name, b.Port = gatewayv1.ObjectName(svc), ptr(gatewayv1.PortNumber(80))
		return []gatewayv1.GRPCBackendRef{b}
	}
	route := &gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Name: "grpc", Namespace: ns},
		Spec: gatewayv1.GRPCRouteSpec{Hostnames: []gatewayv1.Hostname{gatewayv1.Hostname(host)}, Rules: []gatewayv1.GRPCRouteRule{
			{Matches: []gatewayv1.GRPCRouteMatch{unary}, BackendRefs: to("grpc")},
			{Matches: []gatewayv1.GRPCRouteMatch{unaryCanary}, BackendRefs: to("canary")},
		}}}
	route.Spec.ParentRefs = []gatewayv1.ParentReference{g.parent()}
	if _, err := g.GW.GatewayV1().GRPCRoutes(ns).Create(ctx(t), route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	g.waitRouteCondition(t, "GRPCRoute grpc", g.grpcRouteStatus(ns, "grpc"), "Accepted", metav1.ConditionTrue, "Accepted")
	g.waitRouteCondition(t, "GRPCRoute grpc", g.grpcRouteStatus(ns, "grpc"), "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")

	client := grpcClient(t, g.A.ProxyAddr, host, insecure.NewCredentials())
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	canaryCtx := metadata.AppendToOutgoingContext(c, "x-variant", "canary")
	waitFor(t, 30*time.Second, "the canary call answered by "+canaryPod.Name, func() (bool, string) {
		r, err := client.UnaryCall(canaryCtx, &testpb.SimpleRequest{})
		return err == nil && r.GetHostname() == canaryPod.Name, r.GetHostname() + " " + status.Convert(err).String()
	})

	type unaryResult struct {
		r   *testpb.SimpleResponse
		err error
	}
	done := make(chan unaryResult, 1)
	go func() {
		r, err := client.UnaryCall(c, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
		done <- unaryResult{r, err}
	}()
	g.A.waitParked(t, host, 1)
	cold.warm(t, coldPod)
	select {
	case u := <-done:
		if u.err != nil || u.r.GetHostname() != coldPod.Name || string(u.r.GetPayload().GetBody()) != "ping" {
			t.Fatalf("parked UnaryCall: %v %v; want %s echoing ping", u.r, u.err, coldPod.Name)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("parked UnaryCall not released within 60s of the pod being ready")
	}

	if _, err := client.EmptyCall(c, &testpb.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("EmptyCall, which no rule matches: %v; want UNIMPLEMENTED", err)
	}
}
