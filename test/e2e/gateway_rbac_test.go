//go:build e2e

package e2e

import (
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Issue 12: Agimo with exactly the chart's RBAC for gateway.class (a ServiceAccount token,
// not admin) serves an HTTPRoute and writes its status, electing the status writer on the
// Lease agimo-status in its own namespace (POD_NAMESPACE), which the chart's Role there
// grants by that name.
func TestChartRBACGateway(t *testing.T) {
	agimoNS, appNS := newNamespace(t), newNamespace(t)
	release := "agimo-" + agimoNS[len(agimoNS)-4:] // unique: ClusterRoles are cluster-wide
	installChartRBAC(t, agimoNS, release, "--set", "gateway.class="+appNS)
	// The authorizer learns new Roles and bindings from its informers, a moment after they
	// are created: wait for the last rule rendered before running Agimo with them.
	user := "system:serviceaccount:" + agimoNS + ":" + release
	waitFor(t, 30*time.Second, "the chart's status Lease rule in effect", func() (bool, string) {
		r, err := env.client.AuthorizationV1().SubjectAccessReviews().Create(ctx(t), &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{User: user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + agimoNS, "system:authenticated"},
				ResourceAttributes: &authzv1.ResourceAttributes{Namespace: agimoNS, Verb: "update",
					Group: "coordination.k8s.io", Resource: "leases", Name: "agimo-status"}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		return r.Status.Allowed, r.Status.Reason
	})

	pod := startPod(t, "web-0")
	warmWorkload(t, appNS, "web", pod)
	g := startGateway(t, appNS, gatewayOpts{agimoNS: agimoNS,
		agimo: agimoOpts{kubeconfig: tokenKubeconfig(t, agimoNS, release)}})
	host := "web." + appNS + ".e2e"
	g.createHTTPRoute(t, appNS, "web", []string{host}, rule(pathMatch(gatewayv1.PathMatchPathPrefix, "/"), backend("web")))
	g.waitRouteCondition(t, "HTTPRoute web", g.httpRouteStatus(appNS, "web"), "Accepted", metav1.ConditionTrue, "Accepted")
	g.waitServed(t, host, "/", pod)
	lease, err := env.client.CoordinationV1().Leases(agimoNS).Get(ctx(t), "agimo-status", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Lease %s/agimo-status: %v; want the status writers' Lease", agimoNS, err)
	}
	if h := lease.Spec.HolderIdentity; h == nil || *h == "" {
		t.Errorf("Lease %s/agimo-status held by %v; want the Agimo that writes status", agimoNS, h)
	}
}
