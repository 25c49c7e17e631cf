package watch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
)

func ptr[T any](v T) *T { return &v }

func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Ports: ports}}
}

func slice(ns, name, svc string, portName *string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: portName, Port: ptr(port)}},
		Endpoints:   eps,
	}
}

func ep(ip string, ready, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: terminating}}
}

// readyAddrs follows discovery.k8s.io/v1: nil Ready means ready, a
// terminating endpoint is never used, only the named port counts, and an
// endpoint listed in two slices appears once.
func TestReadyAddrs(t *testing.T) {
	http := ptr("http")
	for _, tc := range []struct {
		name string
		eps  []*discoveryv1.EndpointSlice
		port string
		want []string
	}{
		{"ready", []*discoveryv1.EndpointSlice{slice("n", "s1", "a", http, 8080, ep("10.0.0.1", ptr(true), nil))}, "http", []string{"10.0.0.1:8080"}},
		{"nil-ready-means-ready", []*discoveryv1.EndpointSlice{slice("n", "s1", "a", http, 8080, ep("10.0.0.1", nil, nil))}, "http", []string{"10.0.0.1:8080"}},
		{"not-ready", []*discoveryv1.EndpointSlice{slice("n", "s1", "a", http, 8080, ep("10.0.0.1", ptr(false), nil))}, "http", nil},
		{"terminating", []*discoveryv1.EndpointSlice{slice("n", "s1", "a", http, 8080, ep("10.0.0.1", ptr(true), ptr(true)))}, "http", nil},
		{"other-port-name", []*discoveryv1.EndpointSlice{slice("n", "s1", "a", ptr("metrics"), 9090, ep("10.0.0.1", ptr(true), nil))}, "http", nil},
		{"unnamed-port", []*discoveryv1.EndpointSlice{slice("n", "s1", "a", nil, 3000, ep("10.0.0.1", ptr(true), nil))}, "", []string{"10.0.0.1:3000"}},
		{"dedupe-and-sort", []*discoveryv1.EndpointSlice{
			slice("n", "s1", "a", http, 80, ep("10.0.0.2", nil, nil), ep("10.0.0.1", nil, nil)),
			slice("n", "s2", "a", http, 80, ep("10.0.0.1", nil, nil)),
		}, "http", []string{"10.0.0.1:80", "10.0.0.2:80"}},
		{"ipv6", []*discoveryv1.EndpointSlice{slice("n", "s1", "a", http, 80, ep("fd00::1", nil, nil))}, "http", []string{"[fd00::1]:80"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := readyAddrs(tc.eps, tc.port); !slices.Equal(got, tc.want) {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
}

// withAppProto sets the appProtocol of es's first port.
func withAppProto(es *discoveryv1.EndpointSlice, p string) *discoveryv1.EndpointSlice {
	es.Ports[0].AppProtocol = &p
	return es
}

// readyAddrs returns the appProtocol of the named port only, whatever the
// order of the slices, and the smallest non-empty one while they disagree.
func TestReadyAddrsAppProtocol(t *testing.T) {
	http, h2c := ptr("http"), "kubernetes.io/h2c"
	for _, tc := range []struct {
		name string
		eps  []*discoveryv1.EndpointSlice
		want string
	}{
		{"unset", []*discoveryv1.EndpointSlice{slice("n", "s1", "a", http, 80, ep("10.0.0.1", nil, nil))}, ""},
		{"h2c", []*discoveryv1.EndpointSlice{withAppProto(slice("n", "s1", "a", http, 80, ep("10.0.0.1", nil, nil)), h2c)}, h2c},
		{"not-ready-still-told", []*discoveryv1.EndpointSlice{withAppProto(slice("n", "s1", "a", http, 80, ep("10.0.0.1", ptr(false), nil)), h2c)}, h2c},
		{"other-port-ignored", []*discoveryv1.EndpointSlice{withAppProto(slice("n", "s1", "a", ptr("grpc"), 90, ep("10.0.0.1", nil, nil)), h2c)}, ""},
		{"one-slice-unset", []*discoveryv1.EndpointSlice{
			slice("n", "s1", "a", http, 80, ep("10.0.0.1", nil, nil)),
			withAppProto(slice("n", "s2", "a", http, 80, ep("10.0.0.2", nil, nil)), h2c),
		}, h2c},
		{"disagree-smallest", []*discoveryv1.EndpointSlice{
			withAppProto(slice("n", "s1", "a", http, 80, ep("10.0.0.1", nil, nil)), h2c),
			withAppProto(slice("n", "s2", "a", http, 80, ep("10.0.0.2", nil, nil)), "http"),
		}, "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got := readyAddrs(tc.eps, "http")
			if got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
			rev := slices.Clone(tc.eps)
			slices.Reverse(rev)
			if _, got := readyAddrs(rev, "http"); got != tc.want {
				t.Errorf("slices reversed: got %q; want %q", got, tc.want)
			}
		})
	}
}

func TestPortName(t *testing.T) {
	svc := service("n", "a",
		corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromInt(8080)},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
	if got, ok := portName(svc, 80); !ok || got != "web" {
		t.Errorf("port 80: got %q %v; want web true", got, ok)
	}
	if _, ok := portName(svc, 53); ok {
		t.Errorf("port 53/UDP matched; want only TCP ports")
	}
	if _, ok := portName(svc, 81); ok {
		t.Errorf("port 81 matched; want no match")
	}
}

// startWatcher runs a Watcher on a fake clientset holding objs.
func startWatcher(t *testing.T, keys []Key, objs ...any) (*Watcher, *fake.Clientset) {
	t.Helper()
	return startWatcherHandled(t, keys, nil, objs...)
}

// startWatcherHandled is startWatcher with handled called after each
// event the watcher has handled.
func startWatcherHandled(t *testing.T, keys []Key, handled func(any), objs ...any) (*Watcher, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset()
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, err = cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	w := New(cs, keys, zerolog.New(zerolog.NewTestWriter(t)), metrics.NewSet())
	w.handled = handled
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Start(sctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w, cs
}

// waitState waits for s to reach ready, by its broadcast channel only:
// a Changed that never fires fails the test by timeout.
func waitState(t *testing.T, s *Service, ready bool) *State {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		st := s.State()
		if st.Ready == ready {
			return st
		}
		select {
		case <-st.Changed():
		case <-timeout:
			t.Fatalf("service %v ready = %v; want %v", s.Key(), st.Ready, ready)
		}
	}
}

// The watcher follows Service and EndpointSlice changes: ready after sync,
// unready when the endpoint stops being ready, ready again, unready when
// the Service loses the port, and unready when the Service is deleted.
func TestWatcherFollowsChanges(t *testing.T) {
	key := Key{Namespace: "apps", Service: "web", Port: 80}
	svc := service("apps", "web", corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt(8080)})
	es := slice("apps", "web-1", "web", ptr("http"), 8080, ep("10.1.0.1", ptr(true), nil))
	w, cs := startWatcher(t, []Key{key}, svc, es)
	s := w.Service(key)
	if !w.Synced() {
		t.Fatal("not synced after Start")
	}
	st := waitState(t, s, true)
	if !slices.Equal(st.Addrs, []string{"10.1.0.1:8080"}) {
		t.Fatalf("addrs = %v; want [10.1.0.1:8080]", st.Addrs)
	}
	ctx := context.Background()
	update := func(ready bool) {
		t.Helper()
		es.Endpoints[0].Conditions.Ready = ptr(ready)
		if _, err := cs.DiscoveryV1().EndpointSlices("apps").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update(false)
	waitState(t, s, false)
	update(true)
	waitState(t, s, true)

	svc.Spec.Ports[0].Port = 81
	if _, err := cs.CoreV1().Services("apps").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, false)
	svc.Spec.Ports[0].Port = 80
	if _, err := cs.CoreV1().Services("apps").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, true)
	if err := cs.CoreV1().Services("apps").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, false)
}

// A change that does not alter readiness or addresses publishes nothing:
// parked requests are not woken for nothing.
func TestNoSpuriousBroadcast(t *testing.T) {
	key := Key{Namespace: "apps", Service: "web", Port: 80}
	svc := service("apps", "web", corev1.ServicePort{Name: "http", Port: 80})
	es := slice("apps", "web-1", "web", ptr("http"), 8080, ep("10.1.0.1", ptr(true), nil))
	unrelated := make(chan struct{}, 1)
	w, cs := startWatcherHandled(t, []Key{key}, func(obj any) {
		if es, ok := obj.(*discoveryv1.EndpointSlice); ok && es.Labels["unrelated"] == "change" {
			unrelated <- struct{}{}
		}
	}, svc, es)
	st := waitState(t, w.Service(key), true)
	es.Labels["unrelated"] = "change"
	if _, err := cs.DiscoveryV1().EndpointSlices("apps").Update(context.Background(), es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Once the event is handled, readiness must still be the same snapshot.
	select {
	case <-unrelated:
	case <-time.After(5 * time.Second):
		t.Fatal("the unrelated change never reached the watcher")
	}
	select {
	case <-st.Changed():
		t.Fatal("snapshot replaced by an event that changed nothing")
	default:
	}
}

// Two ports of one Service and two Services in two namespaces are kept
// apart: each key sees only its own endpoints.
func TestWatcherKeysAreIndependent(t *testing.T) {
	k1 := Key{Namespace: "a", Service: "web", Port: 80}
	k2 := Key{Namespace: "a", Service: "web", Port: 9000}
	k3 := Key{Namespace: "b", Service: "web", Port: 80}
	objs := []any{
		service("a", "web", corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Name: "admin", Port: 9000}),
		service("b", "web", corev1.ServicePort{Name: "http", Port: 80}),
		slice("a", "web-x", "web", ptr("http"), 8080, ep("10.0.0.1", nil, nil)),
		slice("a", "web-y", "web", ptr("admin"), 9001, ep("10.0.0.2", nil, nil)),
		slice("b", "web-z", "web", ptr("http"), 8080, ep("10.0.0.3", ptr(false), nil)),
	}
	w, _ := startWatcher(t, []Key{k1, k2, k3}, objs...)
	for k, want := range map[Key][]string{k1: {"10.0.0.1:8080"}, k2: {"10.0.0.2:9001"}, k3: nil} {
		if got := w.Service(k).State().Addrs; !slices.Equal(got, want) {
			t.Errorf("%v: addrs = %v; want %v", k, got, want)
		}
	}
}

// Update (config reload) adds keys in a new and in an existing namespace
// without interrupting the readiness of a key that stays: its Service is
// the same object, its State is not replaced, and it still follows events.
func TestUpdateKeys(t *testing.T) {
	a := Key{Namespace: "apps", Service: "a", Port: 80}
	b := Key{Namespace: "apps", Service: "b", Port: 80}
	c := Key{Namespace: "other", Service: "c", Port: 80}
	objs := []any{
		service("apps", "a", corev1.ServicePort{Name: "http", Port: 80}),
		service("apps", "b", corev1.ServicePort{Name: "http", Port: 80}),
		service("other", "c", corev1.ServicePort{Name: "http", Port: 80}),
		slice("apps", "a-1", "a", ptr("http"), 8080, ep("10.0.0.1", nil, nil)),
		slice("apps", "b-1", "b", ptr("http"), 8080, ep("10.0.0.2", nil, nil)),
		slice("other", "c-1", "c", ptr("http"), 8080, ep("10.0.0.3", nil, nil)),
	}
	w, cs := startWatcher(t, []Key{a}, objs...)
	sa := w.Service(a)
	before := waitState(t, sa, true)
	if w.Service(b) != nil {
		t.Fatal("b watched before Update")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Update(ctx, []Key{a, b, c}); err != nil {
		t.Fatal(err)
	}
	if w.Service(a) != sa {
		t.Error("a's Service replaced by Update; parked requests would be orphaned")
	}
	if sa.State() != before {
		t.Error("a's State replaced by an Update that changed nothing for it")
	}
	for _, k := range []Key{b, c} {
		if st := waitState(t, w.Service(k), true); len(st.Addrs) != 1 {
			t.Errorf("%v: addrs = %v; want one", k, st.Addrs)
		}
	}
	// a still follows events after its namespace's informers were replaced.
	es := objs[3].(*discoveryv1.EndpointSlice)
	es.Endpoints[0].Conditions.Ready = ptr(false)
	if _, err := cs.DiscoveryV1().EndpointSlices("apps").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, sa, false)
	// Dropping c stops its namespace's informers; c keeps its last State.
	if err := w.Update(ctx, []Key{a, b}); err != nil {
		t.Fatal(err)
	}
	if !w.Service(c).State().Ready {
		t.Error("dropped key lost its last state")
	}
}

// waitAppProto waits, by the broadcast channel only, for s's State to
// carry appProtocol p.
func waitAppProto(t *testing.T, s *Service, p string) *State {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		st := s.State()
		if st.AppProtocol == p {
			return st
		}
		select {
		case <-st.Changed():
		case <-timeout:
			t.Fatalf("service %v appProtocol = %q; want %q", s.Key(), st.AppProtocol, p)
		}
	}
}

// The State carries the appProtocol of the port serving the key, and a
// change of it alone publishes a new State (the front end picks h2c or
// HTTP/1.1 from it), with readiness and addresses kept.
func TestWatcherFollowsAppProtocol(t *testing.T) {
	key := Key{Namespace: "apps", Service: "grpc", Port: 80}
	svc := service("apps", "grpc", corev1.ServicePort{Name: "h2", Port: 80})
	es := withAppProto(slice("apps", "grpc-1", "grpc", ptr("h2"), 8080, ep("10.1.0.1", nil, nil)), "kubernetes.io/h2c")
	w, cs := startWatcher(t, []Key{key}, svc, es)
	s := w.Service(key)
	st := waitState(t, s, true)
	if st.AppProtocol != "kubernetes.io/h2c" {
		t.Fatalf("appProtocol = %q; want kubernetes.io/h2c", st.AppProtocol)
	}
	ctx := context.Background()
	es.Ports[0].AppProtocol = nil
	if _, err := cs.DiscoveryV1().EndpointSlices("apps").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("no new State after the appProtocol was removed")
	}
	st = waitAppProto(t, s, "")
	if !st.Ready || !slices.Equal(st.Addrs, []string{"10.1.0.1:8080"}) {
		t.Errorf("got ready %v addrs %v; want true [10.1.0.1:8080]", st.Ready, st.Addrs)
	}
	withAppProto(es, "kubernetes.io/h2c")
	if _, err := cs.DiscoveryV1().EndpointSlices("apps").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAppProto(t, s, "kubernetes.io/h2c")
}
