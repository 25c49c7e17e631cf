package gateway

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestRouteStatus: Agimo's parents are replaced (a stale one removed),
// other controllers' kept; an unchanged condition keeps its transition
// time, a changed one gets now.
func TestRouteStatus(t *testing.T) {
	then, now := metav1.NewTime(t0), metav1.NewTime(t0.Add(time.Hour))
	ok := func(typ string, st metav1.ConditionStatus, at metav1.Time) metav1.Condition {
		return metav1.Condition{Type: typ, Status: st, Reason: "R", LastTransitionTime: at}
	}
	theirs := gwv1.RouteStatus{Parents: []gwv1.RouteParentStatus{{ParentRef: parentRef("x"), ControllerName: "example.com/other",
		Conditions: []metav1.Condition{ok("Accepted", metav1.ConditionTrue, then)}}}}
	have := theirs
	have.Parents = append(have.Parents,
		gwv1.RouteParentStatus{ParentRef: parentRef(""), ControllerName: ControllerName, Conditions: []metav1.Condition{
			ok("Accepted", metav1.ConditionTrue, then), ok("ResolvedRefs", metav1.ConditionTrue, then)}},
		gwv1.RouteParentStatus{ParentRef: parentRef("gone"), ControllerName: ControllerName})
	want := []gwv1.RouteParentStatus{{ParentRef: parentRef(""), ControllerName: ControllerName, Conditions: []metav1.Condition{
		ok("Accepted", metav1.ConditionTrue, metav1.Time{}), ok("ResolvedRefs", metav1.ConditionFalse, metav1.Time{})}}}
	got := routeStatus(have, want, now)
	if len(got.Parents) != 2 || got.Parents[0].ControllerName != "example.com/other" || got.Parents[1].ParentRef.SectionName != nil {
		t.Fatalf("parents = %+v; want the other controller's, then Agimo's one", got.Parents)
	}
	cs := got.Parents[1].Conditions
	if !cs[0].LastTransitionTime.Equal(&then) || !cs[1].LastTransitionTime.Equal(&now) {
		t.Errorf("transition times = %v, %v; want %v (unchanged), %v (changed)", cs[0].LastTransitionTime, cs[1].LastTransitionTime, then, now)
	}
	// No parent of Agimo's: theirs stay, nothing else.
	if got := routeStatus(theirs, nil, now); !same(got, theirs) {
		t.Errorf("routeStatus(theirs, none) = %+v; want theirs unchanged", got)
	}
}

// TestTranslateParentPortAndAddresses: a parentRef's port selects
// listeners; a Gateway asking for addresses is not accepted.
func TestTranslateParentPortAndAddresses(t *testing.T) {
	r := newHTTPRoute("r", 1, nil, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backendRef("", "web", 80, nil)}})
	r.Spec.ParentRefs[0].Port = ptr(gwv1.PortNumber(9999))
	g := infraGateway()
	g.Name, g.Spec.Addresses = "addr", []gwv1.GatewaySpecAddress{{Value: "10.0.0.1"}}
	res := Translate(baseConfig(t), newWorld().add(r, g).Snapshot, ports, nil, nil)
	if got := condString(routeCond(res, "HTTPRoute", "r", "Accepted")); got != "False/NoMatchingParent" {
		t.Errorf("route on port 9999: Accepted = %s; want False/NoMatchingParent", got)
	}
	if len(res.Services) != 0 {
		t.Errorf("entries = %q; want none", summary(res.Services))
	}
	st := res.Status.Gateways[nn("infra", "addr")]
	if got := condString(findCond(st.Conditions, "Accepted")); got != "False/UnsupportedAddress" {
		t.Errorf("Gateway with spec.addresses: Accepted = %s; want False/UnsupportedAddress", got)
	}
}
