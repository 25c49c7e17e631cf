// Package gateway serves Gateway API (sigs.k8s.io/gateway-api, standard
// channel: GatewayClass, Gateway, HTTPRoute, GRPCRoute v1; ReferenceGrant
// v1beta1) for Agimo's GatewayClass (issue 12). Like package ingress it
// does not route: it translates the routes attached to the Gateways it
// serves into extra conf.Service entries carrying conf.Extras (matches,
// weights, filters, fixed answers), which main merges after the Ingresses'
// and applies through the ordinary reload, so parked requests survive and
// unchanged routes carry over. Scale-to-zero settings come from the
// backend Services' agimo.dev/* annotations, read as package ingress
// reads them. The Controller (controller.go) watches the objects, asks
// for a reload on every change and writes their status; with several
// replicas only the leader writes (package leader), all of them serve.
package gateway

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/ingress"
)

// ControllerName is the spec.controllerName of the GatewayClass Agimo
// serves, and the controllerName of the route statuses it writes.
const ControllerName gwv1.GatewayController = "agimo.dev/gateway-controller"

// Group is Gateway API's API group.
const Group = gwv1.GroupName

// Snapshot is the cluster state a translation reads.
type Snapshot struct {
	Classes    []*gwv1.GatewayClass
	Gateways   []*gwv1.Gateway
	HTTPRoutes []*gwv1.HTTPRoute
	GRPCRoutes []*gwv1.GRPCRoute
	Grants     []*gwv1beta1.ReferenceGrant
	// Service, Secret and Namespace return an object by name, nil if none.
	Service   func(namespace, name string) *corev1.Service
	Secret    func(namespace, name string) *corev1.Secret
	Namespace func(name string) *corev1.Namespace
}

// Ports are Agimo's listeners: an HTTP listener must use Port (--port),
// an HTTPS one TLSPort (--tls-port).
type Ports struct{ HTTP, TLS int }

// Problem is something logged and reported as a Warning Event on its
// object: a bad annotation on a backend Service, an Ingress rule that
// lost to an older route.
type Problem struct {
	Kind, Namespace, Name string
	Reason, Message       string
}

// Status is what a translation says of each object, for the status
// writer: conditions carry ObservedGeneration but no LastTransitionTime.
type Status struct {
	// Class holds the conditions of the GatewayClass served; nil if none.
	Class      *gwv1.GatewayClass
	ClassConds []metav1.Condition
	Gateways   map[types.NamespacedName]gwv1.GatewayStatus
	// Routes are the parents[] entries of Agimo's controller per route,
	// keyed by kind ("HTTPRoute", "GRPCRoute") and name.
	Routes map[RouteKey][]gwv1.RouteParentStatus
}

// RouteKey names a route.
type RouteKey struct {
	Kind string
	types.NamespacedName
}

// Result is one translation.
type Result struct {
	// Services are the routes' entries, oldest route first, ready for
	// conf.Config.WithServices after the base's own (less Displaced).
	Services []conf.Service
	// Displaced are indexes of base entries from Ingresses younger than
	// a route claiming the same host, path and matches: the route wins.
	Displaced []int
	// TLSSecrets are the listeners' certificate Secrets, "NAMESPACE/NAME".
	TLSSecrets []string
	// Settings are the backend Services' annotation settings in force, to
	// pass to the next translation as prev.
	Settings map[types.NamespacedName]ingress.Settings
	Problems []Problem
	Status   Status
}

// Translate turns the routes attached to the Gateways of
// base.GatewayClass into entries valid in base (the config file's with
// the Ingresses' entries, validated), whose own (host, path, matches)
// claims come first, except an Ingress's younger than the route: of two
// claims, the config file wins, then the oldest object (creationTimestamp,
// then kind, namespace and name). prev are the previous translation's
// Settings: a backend whose annotations are now invalid keeps them.
func Translate(base *conf.Config, snap Snapshot, ports Ports, addrs []gwv1.GatewayStatusAddress, prev map[types.NamespacedName]ingress.Settings) Result {
	res := Result{Settings: make(map[types.NamespacedName]ingress.Settings), Status: Status{
		Gateways: make(map[types.NamespacedName]gwv1.GatewayStatus),
		Routes:   make(map[RouteKey][]gwv1.RouteParentStatus),
	}}
	if base.GatewayClass == "" {
		return res
	}
	t := &translator{base: base, snap: snap, ports: ports, prev: prev, res: &res,
		gateways: make(map[types.NamespacedName]*gateway), claims: make(map[string]claim)}
	for _, gc := range snap.Classes {
		if gc.Name == base.GatewayClass && gc.Spec.ControllerName == ControllerName {
			t.class(gc)
		}
	}
	if res.Status.Class == nil || !meta.IsStatusConditionTrue(res.Status.ClassConds, string(gwv1.GatewayClassConditionStatusAccepted)) {
		return res
	}
	gws := slices.Clone(snap.Gateways)
	slices.SortFunc(gws, func(a, b *gwv1.Gateway) int { return older(&a.ObjectMeta, &b.ObjectMeta) })
	for _, gw := range gws {
		if string(gw.Spec.GatewayClassName) == base.GatewayClass {
			t.gateway(gw, addrs)
		}
	}
	for i, s := range base.Services {
		t.claimBase(i, &s)
	}
	var routes []route
	for _, r := range snap.HTTPRoutes {
		routes = append(routes, httpRoute(r))
	}
	for _, r := range snap.GRPCRoutes {
		routes = append(routes, grpcRoute(r))
	}
	slices.SortFunc(routes, func(a, b route) int {
		return cmp.Or(older(a.meta, b.meta), strings.Compare(a.kind, b.kind))
	})
	for _, r := range routes {
		t.route(r)
	}
	for key, gw := range t.gateways {
		st := res.Status.Gateways[key]
		for i := range gw.listeners {
			st.Listeners[i].AttachedRoutes = gw.listeners[i].attached
		}
		res.Status.Gateways[key] = st
	}
	t.probePaths()
	return res
}

// older orders objects oldest first, then by namespace and name.
func older(a, b *metav1.ObjectMeta) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

type translator struct {
	base     *conf.Config
	snap     Snapshot
	ports    Ports
	prev     map[types.NamespacedName]ingress.Settings
	res      *Result
	gateways map[types.NamespacedName]*gateway
	claims   map[string]claim // claimKey -> who
}

// claim is who serves a host, path and matches.
type claim struct {
	base    int // index in base.Services, or -1 for a route's entry
	source  string
	created metav1.Time
}

// cond makes a condition of an object of generation gen.
func cond[T, R ~string](typ T, ok bool, reason R, gen int64, format string, args ...any) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: string(typ), Status: st, Reason: string(reason), Message: fmt.Sprintf(format, args...), ObservedGeneration: gen}
}

// class accepts Agimo's GatewayClass: it takes no parameters.
func (t *translator) class(gc *gwv1.GatewayClass) {
	t.res.Status.Class = gc
	c := cond(gwv1.GatewayClassConditionStatusAccepted, true, gwv1.GatewayClassReasonAccepted, gc.Generation, "Agimo serves this class (gateway_class)")
	if gc.Spec.ParametersRef != nil {
		c = cond(gwv1.GatewayClassConditionStatusAccepted, false, gwv1.GatewayClassReasonInvalidParameters, gc.Generation, "Agimo takes no parametersRef")
	}
	t.res.Status.ClassConds = []metav1.Condition{c}
}

// grants reports whether a ReferenceGrant in namespace to lets objects
// of kind in namespace from refer to the object kind toKind named name.
func (t *translator) grants(fromKind, from, toKind, to, name string) bool {
	for _, g := range t.snap.Grants {
		if g.Namespace != to {
			continue
		}
		okFrom := slices.ContainsFunc(g.Spec.From, func(f gwv1beta1.ReferenceGrantFrom) bool {
			return string(f.Group) == Group && string(f.Kind) == fromKind && string(f.Namespace) == from
		})
		okTo := slices.ContainsFunc(g.Spec.To, func(r gwv1beta1.ReferenceGrantTo) bool {
			return r.Group == "" && string(r.Kind) == toKind && (r.Name == nil || string(*r.Name) == name)
		})
		if okFrom && okTo {
			return true
		}
	}
	return false
}
