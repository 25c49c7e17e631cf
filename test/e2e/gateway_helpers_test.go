//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// gatewayController is the controllerName of Agimo's GatewayClass (issue 12).
const gatewayController = "agimo.dev/gateway-controller"

// gatewayAPI holds the result of applying the Gateway API CRDs, done once per run.
var gatewayAPI struct {
	once   sync.Once
	client gwclient.Interface
	err    error
}

// needGatewayAPI applies the Gateway API standard channel to the control plane on first
// use (later calls reuse it) and returns the typed Gateway API client.
func needGatewayAPI(t *testing.T) gwclient.Interface {
	t.Helper()
	gatewayAPI.once.Do(func() {
		start := time.Now()
		if gatewayAPI.err = installGatewayAPI(); gatewayAPI.err == nil {
			gatewayAPI.client, gatewayAPI.err = gwclient.NewForConfig(env.rest)
		}
		fmt.Printf("e2e: Gateway API standard channel applied in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if gatewayAPI.err != nil {
		t.Fatalf("Gateway API CRDs: %v", gatewayAPI.err)
	}
	return gatewayAPI.client
}

// installGatewayAPI server-side applies config/crd/standard/*.yaml of the
// sigs.k8s.io/gateway-api module go.mod names (the CRDs of the very version Agimo is built
// against, as the README tells users to install) and waits until every CRD is Established.
// Server-side, as the Gateway API install docs say: the CRDs are too large for the
// last-applied annotation of a client-side apply.
func installGatewayAPI() error {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir = env.root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go list -m sigs.k8s.io/gateway-api: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRD files in the gateway-api module at %s (%v)", out, err)
	}
	dyn, err := dynamic.NewForConfig(env.rest)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.client.Discovery()))
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var crds []string
	for _, f := range files {
		names, err := applyFile(c, dyn, mapper, f)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		crds = append(crds, names...)
	}
	crdAPI := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, name := range crds {
		for {
			u, err := crdAPI.Get(c, name, metav1.GetOptions{})
			if err == nil && established(u) {
				break
			}
			select {
			case <-c.Done():
				return fmt.Errorf("CRD %s not Established: %w (last error: %v)", name, c.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// applyFile applies every document of a multi-document YAML file (all cluster-scoped:
// CRDs and the ValidatingAdmissionPolicy that guards them) and returns the CRDs' names.
func applyFile(c context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var crds []string
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return crds, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj.Object) == 0 {
			continue // an empty document between two "---"
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, err
		}
		if _, err := dyn.Resource(m.Resource).Apply(c, obj.GetName(), obj,
			metav1.ApplyOptions{FieldManager: "agimo-e2e", Force: true}); err != nil {
			return nil, fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		if gvk.Kind == "CustomResourceDefinition" {
			crds = append(crds, obj.GetName())
		}
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// gatewayEnv is one test's Gateway API setup: a GatewayClass of Agimo's controller, an
// Agimo serving that class, and the Gateway "gw" in NS with an HTTP listener on Agimo's
// --port (and an HTTPS one on its --tls-port if asked).
type gatewayEnv struct {
	GW    gwclient.Interface
	NS    string
	Class string
	A     *agimoProc
}

// gatewayOpts tunes startGateway; the zero value is one HTTP listener for any hostname
// that admits routes of the Gateway's namespace only (allowedRoutes' default).
type gatewayOpts struct {
	hostname  string // the listeners' hostname ("" = any)
	tlsSecret string // add an HTTPS listener with this certificateRef (a Secret in NS)
	agimoNS   string // Agimo's own namespace (POD_NAMESPACE: its status Lease's); "" = NS
	agimo     agimoOpts
}

// startGateway creates a GatewayClass named after ns (GatewayClasses are cluster-wide:
// one per test) and the Gateway, whose listeners are on the ports Agimo will listen on,
// then starts Agimo with gateway_class set to that class and POD_NAMESPACE (the namespace
// of its status Lease). The Gateway exists before Agimo starts, as after a
// restart; routes created later are changes Agimo sees running.
func startGateway(t *testing.T, ns string, o gatewayOpts) *gatewayEnv {
	t.Helper()
	g := &gatewayEnv{GW: needGatewayAPI(t), NS: ns, Class: ns}
	_, err := g.GW.GatewayV1().GatewayClasses().Create(ctx(t), &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: g.Class},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: gatewayController},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.GW.GatewayV1().GatewayClasses().Delete(context.Background(), g.Class, metav1.DeleteOptions{})
	})

	o.agimo.proxyAddr, o.agimo.tlsAddr = freeAddr(t), freeAddr(t)
	listener := func(name string, proto gatewayv1.ProtocolType, addr string) gatewayv1.Listener {
		_, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		l := gatewayv1.Listener{Name: gatewayv1.SectionName(name), Protocol: proto, Port: gatewayv1.PortNumber(p)}
		if o.hostname != "" {
			l.Hostname = ptr(gatewayv1.Hostname(o.hostname))
		}
		return l
	}
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: ns},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: gatewayv1.ObjectName(g.Class),
			Listeners: []gatewayv1.Listener{listener("http", gatewayv1.HTTPProtocolType, o.agimo.proxyAddr)}},
	}
	if o.tlsSecret != "" {
		l := listener("https", gatewayv1.HTTPSProtocolType, o.agimo.tlsAddr)
		l.TLS = &gatewayv1.ListenerTLSConfig{Mode: ptr(gatewayv1.TLSModeTerminate),
			CertificateRefs: []gatewayv1.SecretObjectReference{{Name: gatewayv1.ObjectName(o.tlsSecret)}}}
		gw.Spec.Listeners = append(gw.Spec.Listeners, l)
	}
	if _, err := g.GW.GatewayV1().Gateways(ns).Create(ctx(t), gw, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if o.agimoNS == "" {
		o.agimoNS = ns
	}
	o.agimo.env = append(o.agimo.env, "POD_NAMESPACE="+o.agimoNS)
	g.A = startAgimo(t, "timeout = '60s'\ngateway_class = '"+g.Class+"'\n", o.agimo)
	return g
}

// parent is a parentRef to this test's Gateway.
func (g *gatewayEnv) parent() gatewayv1.ParentReference {
	return gatewayv1.ParentReference{Name: "gw", Namespace: ptr(gatewayv1.Namespace(g.NS))}
}

// createHTTPRoute creates an HTTPRoute in ns attached to the test's Gateway.
func (g *gatewayEnv) createHTTPRoute(t *testing.T, ns, name string, hostnames []string, rules ...gatewayv1.HTTPRouteRule) *gatewayv1.HTTPRoute {
	t.Helper()
	r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{Rules: rules}}
	r.Spec.ParentRefs = []gatewayv1.ParentReference{g.parent()}
	for _, h := range hostnames {
		r.Spec.Hostnames = append(r.Spec.Hostnames, gatewayv1.Hostname(h))
	}
	created, err := g.GW.GatewayV1().HTTPRoutes(ns).Create(ctx(t), r, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// backend is a backendRef to the Service name (port 80) in the route's namespace, or in
// ns if given, without a weight (the spec's default, 1).
func backend(name string, ns ...string) gatewayv1.HTTPBackendRef {
	b := gatewayv1.HTTPBackendRef{}
	b.Name, b.Port = gatewayv1.ObjectName(name), ptr(gatewayv1.PortNumber(80))
	if len(ns) > 0 {
		b.Namespace = ptr(gatewayv1.Namespace(ns[0]))
	}
	return b
}

// weighted is b with a weight (0: no traffic).
func weighted(b gatewayv1.HTTPBackendRef, w int32) gatewayv1.HTTPBackendRef {
	b.Weight = ptr(w)
	return b
}

// pathMatch matches a path: PathPrefix or Exact.
func pathMatch(typ gatewayv1.PathMatchType, value string) gatewayv1.HTTPRouteMatch {
	return gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: ptr(typ), Value: ptr(value)}}
}

// rule is one HTTPRoute rule: one match to backends.
func rule(m gatewayv1.HTTPRouteMatch, backends ...gatewayv1.HTTPBackendRef) gatewayv1.HTTPRouteRule {
	return gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{m}, BackendRefs: backends}
}

// routeStatus reads a route's generation and status (HTTPRoute or GRPCRoute).
type routeStatus func(context.Context) (int64, gatewayv1.RouteStatus, error)

func (g *gatewayEnv) httpRouteStatus(ns, name string) routeStatus {
	return func(c context.Context) (int64, gatewayv1.RouteStatus, error) {
		r, err := g.GW.GatewayV1().HTTPRoutes(ns).Get(c, name, metav1.GetOptions{})
		if err != nil {
			return 0, gatewayv1.RouteStatus{}, err
		}
		return r.Generation, r.Status.RouteStatus, nil
	}
}

func (g *gatewayEnv) grpcRouteStatus(ns, name string) routeStatus {
	return func(c context.Context) (int64, gatewayv1.RouteStatus, error) {
		r, err := g.GW.GatewayV1().GRPCRoutes(ns).Get(c, name, metav1.GetOptions{})
		if err != nil {
			return 0, gatewayv1.RouteStatus{}, err
		}
		return r.Generation, r.Status.RouteStatus, nil
	}
}

// waitRouteCondition waits until the route's status entry for the test's Gateway, written
// by Agimo's controller, has condition typ with status and reason for the route's current
// generation (a condition of an older generation says nothing about this one).
func (g *gatewayEnv) waitRouteCondition(t *testing.T, what string, get routeStatus, typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%s: %s=%s (%s)", what, typ, status, reason), func() (bool, string) {
		gen, st, err := get(ctx(t))
		if err != nil {
			return false, err.Error()
		}
		for _, p := range st.Parents {
			if p.ControllerName != gatewayController || string(p.ParentRef.Name) != "gw" ||
				p.ParentRef.Namespace != nil && string(*p.ParentRef.Namespace) != g.NS {
				continue
			}
			c := meta.FindStatusCondition(p.Conditions, typ)
			if c == nil {
				return false, fmt.Sprintf("parent status without %s: %+v", typ, p.Conditions)
			}
			ok := c.Status == status && c.Reason == reason && c.ObservedGeneration == gen
			return ok, fmt.Sprintf("%s=%s reason %s observedGeneration %d (generation %d): %s",
				typ, c.Status, c.Reason, c.ObservedGeneration, gen, c.Message)
		}
		return false, fmt.Sprintf("no status of %s for Gateway %s/gw: %+v", gatewayController, g.NS, st.Parents)
	})
}

// waitCondition waits until conds (read by get, with the object's generation) has typ
// with status (and reason, if not "") for the current generation.
func waitCondition(t *testing.T, what string, get func(context.Context) (int64, []metav1.Condition, error), typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%s: %s=%s", what, typ, status), func() (bool, string) {
		gen, conds, err := get(ctx(t))
		if err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(conds, typ)
		if c == nil {
			return false, fmt.Sprintf("no %s condition in %+v", typ, conds)
		}
		ok := c.Status == status && (reason == "" || c.Reason == reason) && c.ObservedGeneration == gen
		return ok, fmt.Sprintf("%s=%s reason %s observedGeneration %d (generation %d): %s",
			typ, c.Status, c.Reason, c.ObservedGeneration, gen, c.Message)
	})
}

// waitFor is eventually with the last observation in the failure message.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", d, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitServed waits until a GET of host and path answers 200 from pod p: a route becomes
// served some time after the object is written (informer, then reload).
func (g *gatewayEnv) waitServed(t *testing.T, host, path string, p *fakePod) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%s%s served by %s", host, path, p.Name), func() (bool, string) {
		r := g.A.get(host, path)
		return r.Err == nil && r.Status == 200 && strings.Contains(r.Body, "pod="+p.Name+" "),
			fmt.Sprintf("%d %v %q", r.Status, r.Err, r.Body)
	})
}
