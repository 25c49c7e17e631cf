package gateway

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	kfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/agimo/agimo/conf"
)

// rig is a Controller on fake clientsets holding Agimo's class, Gateway
// infra/gw and HTTPRoute apps/r to Service apps/web.
type rig struct {
	c      *Controller
	gw     *gwfake.Clientset
	cancel context.CancelFunc
	wg     sync.WaitGroup
	events *record.FakeRecorder
}

func newRig(t *testing.T, crds bool, leading func() bool, changed func()) *rig {
	t.Helper()
	r := &rig{events: record.NewFakeRecorder(100)}
	route := newHTTPRoute("r", 1, []string{"a.example"}, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backendRef("", "web", 80, nil)}})
	// NewSimpleClientset: NewClientset's field management knows no
	// Gateway; and a Gateway is created, not preset, as the tracker's
	// preset guesses the resource "gatewaies" (meta.UnsafeGuessKindToResource).
	r.gw = gwfake.NewSimpleClientset(agimoClass(), route)
	if _, err := r.gw.GatewayV1().Gateways("infra").Create(context.Background(), infraGateway(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if crds {
		disc := r.gw.Discovery().(*fakediscovery.FakeDiscovery)
		for gv, names := range gatewayResources {
			l := &metav1.APIResourceList{GroupVersion: gv}
			for _, n := range names {
				l.APIResources = append(l.APIResources, metav1.APIResource{Name: n})
			}
			disc.Resources = append(disc.Resources, l)
		}
	}
	kc := kfake.NewClientset(svc("apps", "web", nil), tlsSecret("infra", "cert"))
	r.c = New(Options{Client: r.gw, Kube: kc, Log: zerolog.Nop(), Ports: ports, PublishAddress: "192.0.2.9",
		Recorder: r.events, Leading: leading, Changed: changed})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if err := r.c.Start(ctx); err != nil {
		t.Fatalf("Start = %v", err)
	}
	t.Cleanup(func() {
		cancel()
		r.wg.Wait()
		r.c.Close()
	})
	return r
}

// updates counts the status updates the fake clientset saw.
func (r *rig) updates() int {
	n := 0
	for _, a := range r.gw.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

// TestControllerMergeAndStatus: Merge adds the route's entry and the
// listener's certificate; WriteStatus writes the class's, the Gateway's
// and the route's status once, and nothing when unchanged.
func TestControllerMergeAndStatus(t *testing.T) {
	r := newRig(t, true, nil, nil)
	ctx := context.Background()
	m, err := r.c.Merge(baseConfig(t))
	if err != nil {
		t.Fatalf("Merge = %v", err)
	}
	if len(m.Services) != 1 || m.Services[0].Host != "a.example" || len(m.TLSSecrets) != 1 || m.TLSSecrets[0] != "infra/cert" {
		t.Fatalf("merged: %d services, TLS secrets %q; want a.example and infra/cert", len(m.Services), m.TLSSecrets)
	}
	r.c.WriteStatus(ctx)
	gc, _ := r.gw.GatewayV1().GatewayClasses().Get(ctx, "agimo", metav1.GetOptions{})
	if got := condString(findCond(gc.Status.Conditions, "Accepted")); got != "True/Accepted" {
		t.Errorf("GatewayClass Accepted = %s; want True/Accepted", got)
	}
	gw, _ := r.gw.GatewayV1().Gateways("infra").Get(ctx, "gw", metav1.GetOptions{})
	if got := condString(findCond(gw.Status.Conditions, "Programmed")); got != "True/Programmed" || len(gw.Status.Addresses) != 1 ||
		gw.Status.Addresses[0].Value != "192.0.2.9" || len(gw.Status.Listeners) != 2 || gw.Status.Listeners[0].AttachedRoutes != 1 {
		t.Errorf("Gateway status = %+v; want Programmed, address 192.0.2.9, 2 listeners, 1 route on http", gw.Status)
	}
	hr, _ := r.gw.GatewayV1().HTTPRoutes("apps").Get(ctx, "r", metav1.GetOptions{})
	if len(hr.Status.Parents) != 1 || hr.Status.Parents[0].ControllerName != ControllerName ||
		condString(findCond(hr.Status.Parents[0].Conditions, "Accepted")) != "True/Accepted" ||
		findCond(hr.Status.Parents[0].Conditions, "Accepted").LastTransitionTime.IsZero() {
		t.Errorf("HTTPRoute status = %+v; want one parent of Agimo, Accepted, with a transition time", hr.Status)
	}
	n := r.updates()
	if n != 3 {
		t.Errorf("%d status updates; want 3", n)
	}
	// Written again from what the API server now holds: no change.
	if _, err := r.c.Merge(baseConfig(t)); err != nil {
		t.Fatal(err)
	}
	r.c.WriteStatus(ctx)
	if got := r.updates(); got != n {
		t.Errorf("%d status updates after an unchanged merge; want %d", got, n)
	}
}

// TestControllerNotLeading: a replica that does not lead serves the
// routes and writes no status.
func TestControllerNotLeading(t *testing.T) {
	r := newRig(t, true, func() bool { return false }, nil)
	m, err := r.c.Merge(baseConfig(t))
	if err != nil || len(m.Services) != 1 {
		t.Fatalf("Merge = %v, %d services; want the route's entry", err, len(m.Services))
	}
	r.c.WriteStatus(context.Background())
	if n := r.updates(); n != 0 {
		t.Errorf("%d status updates; want 0", n)
	}
}

// TestControllerNoCRDs: without Gateway API's CRDs Start succeeds and
// Merge adds nothing.
func TestControllerNoCRDs(t *testing.T) {
	r := newRig(t, false, nil, nil)
	m, err := r.c.Merge(baseConfig(t))
	if err != nil || len(m.Services) != 0 {
		t.Errorf("Merge = %v, %d services; want no error, none", err, len(m.Services))
	}
}

// TestControllerRun: a new route calls Changed; the status due after a
// Merge is written by Run.
func TestControllerRun(t *testing.T) {
	changed := make(chan struct{}, 1)
	r := newRig(t, true, nil, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	written := make(chan struct{})
	var once sync.Once
	r.gw.PrependReactor("update", "httproutes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetSubresource() == "status" && u.GetObject().(metav1.Object).GetName() == "r2" {
			once.Do(func() { close(written) })
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.wg.Go(func() { r.c.Run(ctx) })
	route := newHTTPRoute("r2", 2, []string{"b.example"}, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backendRef("", "web", 80, nil)}})
	if _, err := r.gw.GatewayV1().HTTPRoutes("apps").Create(ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for served := false; !served; {
		<-changed // as main does: merge on every change
		m, err := r.c.Merge(baseConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		served = slices.ContainsFunc(m.Services, func(s conf.Service) bool { return s.Host == "b.example" })
	}
	<-written
}
