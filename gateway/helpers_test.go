package gateway

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/agimo/agimo/conf"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func om(ns, name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Second))}
}

var ports = Ports{HTTP: 8080, TLS: 8443}

func agimoClass() *gwv1.GatewayClass {
	return &gwv1.GatewayClass{ObjectMeta: om("", "agimo", 0), Spec: gwv1.GatewayClassSpec{ControllerName: ControllerName}}
}

// infraGateway is Gateway infra/gw: listener "http" on 8080 from all
// namespaces, "https" on 8443 with Secret infra/cert.
func infraGateway() *gwv1.Gateway {
	all := gwv1.NamespacesFromAll
	routes := &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}}
	return &gwv1.Gateway{ObjectMeta: om("infra", "gw", 0), Spec: gwv1.GatewaySpec{GatewayClassName: "agimo", Listeners: []gwv1.Listener{
		{Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType, AllowedRoutes: routes},
		{Name: "https", Port: 8443, Protocol: gwv1.HTTPSProtocolType, AllowedRoutes: routes,
			TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "cert"}}}},
	}}}
}

func svc(ns, name string, ann map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann}}
}

func tlsSecret(ns, name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS}
}

func parentRef(section string) gwv1.ParentReference {
	ns := gwv1.Namespace("infra")
	p := gwv1.ParentReference{Name: "gw", Namespace: &ns}
	if section != "" {
		s := gwv1.SectionName(section)
		p.SectionName = &s
	}
	return p
}

func backendRef(ns, name string, port int32, w *int32) gwv1.HTTPBackendRef {
	b := gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: &port}, Weight: w}}
	if ns != "" {
		n := gwv1.Namespace(ns)
		b.Namespace = &n
	}
	return b
}

func pathMatch(typ gwv1.PathMatchType, v string) gwv1.HTTPRouteMatch {
	return gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: &typ, Value: &v}}
}

// httpRoute is HTTPRoute apps/NAME (age seconds after t0) on Gateway
// infra/gw with hostnames and rules.
func newHTTPRoute(name string, age int, hosts []string, rules ...gwv1.HTTPRouteRule) *gwv1.HTTPRoute {
	hr := &gwv1.HTTPRoute{ObjectMeta: om("apps", name, age)}
	hr.Spec.ParentRefs = []gwv1.ParentReference{parentRef("")}
	for _, h := range hosts {
		hr.Spec.Hostnames = append(hr.Spec.Hostnames, gwv1.Hostname(h))
	}
	hr.Spec.Rules = rules
	return hr
}

// world is a snapshot being built.
type world struct {
	Snapshot
	services   map[types.NamespacedName]*corev1.Service
	secrets    map[types.NamespacedName]*corev1.Secret
	namespaces map[string]*corev1.Namespace
}

func newWorld() *world {
	w := &world{services: map[types.NamespacedName]*corev1.Service{}, secrets: map[types.NamespacedName]*corev1.Secret{},
		namespaces: map[string]*corev1.Namespace{}}
	w.Classes = []*gwv1.GatewayClass{agimoClass()}
	w.Gateways = []*gwv1.Gateway{infraGateway()}
	w.add(svc("apps", "web", nil), svc("apps", "api", nil), tlsSecret("infra", "cert"))
	w.Service = func(ns, n string) *corev1.Service { return w.services[types.NamespacedName{Namespace: ns, Name: n}] }
	w.Secret = func(ns, n string) *corev1.Secret { return w.secrets[types.NamespacedName{Namespace: ns, Name: n}] }
	w.Namespace = func(n string) *corev1.Namespace { return w.namespaces[n] }
	return w
}

func (w *world) add(objs ...any) *world {
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			w.services[types.NamespacedName{Namespace: o.Namespace, Name: o.Name}] = o
		case *corev1.Secret:
			w.secrets[types.NamespacedName{Namespace: o.Namespace, Name: o.Name}] = o
		case *corev1.Namespace:
			w.namespaces[o.Name] = o
		case *gwv1.HTTPRoute:
			w.HTTPRoutes = append(w.HTTPRoutes, o)
		case *gwv1.GRPCRoute:
			w.GRPCRoutes = append(w.GRPCRoutes, o)
		case *gwv1beta1.ReferenceGrant:
			w.Grants = append(w.Grants, o)
		case *gwv1.Gateway:
			w.Gateways = append(w.Gateways, o)
		}
	}
	return w
}

// baseConfig is a validated config with gateway_class "agimo" and entries.
func baseConfig(t *testing.T, entries ...conf.Service) *conf.Config {
	t.Helper()
	c := &conf.Config{GatewayClass: "agimo", Services: entries}
	if err := c.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	return c
}

// routeCond returns condition typ of route kind apps/name's first parent.
func routeCond(res Result, kind, name, typ string) *metav1.Condition {
	ps := res.Status.Routes[RouteKey{Kind: kind, NamespacedName: types.NamespacedName{Namespace: "apps", Name: name}}]
	if len(ps) == 0 {
		return nil
	}
	return meta.FindStatusCondition(ps[0].Conditions, typ)
}

func condString(c *metav1.Condition) string {
	if c == nil {
		return "<none>"
	}
	return string(c.Status) + "/" + c.Reason
}

func nn(ns, name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }

func findCond(cs []metav1.Condition, typ string) *metav1.Condition {
	return meta.FindStatusCondition(cs, typ)
}
