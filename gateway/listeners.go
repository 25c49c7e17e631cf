package gateway

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// gateway is a Gateway served, with its listeners' verdicts.
type gateway struct {
	gw        *gwv1.Gateway
	listeners []listener
}

// listener is one of a Gateway's listeners.
type listener struct {
	l        *gwv1.Listener
	accepted bool
	kinds    []gwv1.RouteGroupKind // the route kinds it supports and allows
	attached int32
}

// supportedKinds are the route kinds of an HTTP or HTTPS listener.
var supportedKinds = []gwv1.RouteGroupKind{
	{Group: ptr(gwv1.Group(Group)), Kind: "HTTPRoute"},
	{Group: ptr(gwv1.Group(Group)), Kind: "GRPCRoute"},
}

func ptr[T any](v T) *T { return &v }

// gateway checks gw's listeners against Agimo's ports and records its
// status: conditions, listeners, addresses; attachedRoutes are counted
// as routes attach.
func (t *translator) gateway(gw *gwv1.Gateway, addrs []gwv1.GatewayStatusAddress) {
	g := &gateway{gw: gw}
	gen := gw.Generation
	st := gwv1.GatewayStatus{Addresses: slices.Clone(addrs)}
	seen := make(map[string]string) // "port hostname" -> listener
	valid := 0
	for i := range gw.Spec.Listeners {
		l := &gw.Spec.Listeners[i]
		ls := listener{l: l}
		accepted := cond(gwv1.ListenerConditionAccepted, true, gwv1.ListenerReasonAccepted, gen, "Listener is valid")
		resolved := cond(gwv1.ListenerConditionResolvedRefs, true, gwv1.ListenerReasonResolvedRefs, gen, "All references resolved")
		conflicted := cond(gwv1.ListenerConditionConflicted, false, gwv1.ListenerReasonNoConflicts, gen, "No conflicts")
		host := ""
		if l.Hostname != nil {
			host = strings.ToLower(string(*l.Hostname))
		}
		switch l.Protocol {
		case gwv1.HTTPProtocolType:
			if int(l.Port) != t.ports.HTTP {
				accepted = cond(gwv1.ListenerConditionAccepted, false, gwv1.ListenerReasonPortUnavailable, gen,
					"Agimo serves HTTP on port %d (--port), not %d", t.ports.HTTP, l.Port)
			}
		case gwv1.HTTPSProtocolType:
			if int(l.Port) != t.ports.TLS {
				accepted = cond(gwv1.ListenerConditionAccepted, false, gwv1.ListenerReasonPortUnavailable, gen,
					"Agimo serves HTTPS on port %d (--tls-port), not %d", t.ports.TLS, l.Port)
			} else if msg, reason := t.certificates(gw, l); msg != "" {
				resolved = cond(gwv1.ListenerConditionResolvedRefs, false, reason, gen, "%s", msg)
			}
		default:
			accepted = cond(gwv1.ListenerConditionAccepted, false, gwv1.ListenerReasonUnsupportedProtocol, gen,
				"Agimo supports the protocols HTTP and HTTPS, not %s", l.Protocol)
		}
		if accepted.Status == metav1.ConditionTrue {
			key := fmt.Sprint(l.Port, " ", host)
			if other, dup := seen[key]; dup {
				conflicted = cond(gwv1.ListenerConditionConflicted, true, gwv1.ListenerReasonHostnameConflict, gen,
					"listener %q has the same port and hostname", other)
				accepted = cond(gwv1.ListenerConditionAccepted, false, gwv1.ListenerReasonHostnameConflict, gen,
					"listener %q has the same port and hostname", other)
			} else {
				seen[key] = string(l.Name)
			}
		}
		var bad []string
		ls.kinds, bad = routeKinds(l)
		if len(bad) > 0 && resolved.Status == metav1.ConditionTrue {
			resolved = cond(gwv1.ListenerConditionResolvedRefs, false, gwv1.ListenerReasonInvalidRouteKinds, gen,
				"unsupported route kinds %s: Agimo supports HTTPRoute and GRPCRoute", strings.Join(bad, ", "))
		}
		ls.accepted = accepted.Status == metav1.ConditionTrue
		programmed := cond(gwv1.ListenerConditionProgrammed, true, gwv1.ListenerReasonProgrammed, gen, "Listener is served")
		if !ls.accepted || resolved.Status != metav1.ConditionTrue {
			programmed = cond(gwv1.ListenerConditionProgrammed, false, gwv1.ListenerReasonInvalid, gen, "Listener is invalid: see Accepted and ResolvedRefs")
		}
		if ls.accepted {
			valid++
		}
		if l.Protocol != gwv1.HTTPProtocolType && l.Protocol != gwv1.HTTPSProtocolType {
			ls.kinds = nil
		}
		g.listeners = append(g.listeners, ls)
		st.Listeners = append(st.Listeners, gwv1.ListenerStatus{Name: l.Name, SupportedKinds: slices.Clone(ls.kinds),
			Conditions: []metav1.Condition{accepted, programmed, resolved, conflicted}})
	}
	switch {
	case len(gw.Spec.Addresses) > 0:
		st.Conditions = []metav1.Condition{
			cond(gwv1.GatewayConditionAccepted, false, gwv1.GatewayReasonUnsupportedAddress, gen, "Agimo's addresses are its own Service's (--publish-service, --publish-address): spec.addresses is not supported"),
			cond(gwv1.GatewayConditionProgrammed, false, gwv1.GatewayReasonAddressNotUsable, gen, "spec.addresses is not supported"),
		}
		g.listeners = nil // nothing attaches
	case valid == len(gw.Spec.Listeners):
		st.Conditions = []metav1.Condition{
			cond(gwv1.GatewayConditionAccepted, true, gwv1.GatewayReasonAccepted, gen, "Gateway is served by Agimo"),
			cond(gwv1.GatewayConditionProgrammed, true, gwv1.GatewayReasonProgrammed, gen, "Gateway is served by Agimo"),
		}
	default:
		st.Conditions = []metav1.Condition{
			cond(gwv1.GatewayConditionAccepted, valid > 0, gwv1.GatewayReasonListenersNotValid, gen, "%d of %d listeners are invalid: see their conditions", len(gw.Spec.Listeners)-valid, len(gw.Spec.Listeners)),
			cond(gwv1.GatewayConditionProgrammed, valid > 0, gwv1.GatewayReasonProgrammed, gen, "the valid listeners are served"),
		}
		if valid == 0 {
			st.Conditions[1] = cond(gwv1.GatewayConditionProgrammed, false, gwv1.GatewayReasonInvalid, gen, "no valid listener")
		}
	}
	key := types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}
	t.gateways[key] = g
	t.res.Status.Gateways[key] = st
}

// routeKinds returns the route kinds listener l allows that Agimo
// supports (all it supports if l names none), and those it names that
// Agimo does not.
func routeKinds(l *gwv1.Listener) (ok []gwv1.RouteGroupKind, bad []string) {
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		return slices.Clone(supportedKinds), nil
	}
	for _, k := range l.AllowedRoutes.Kinds {
		g := Group
		if k.Group != nil {
			g = string(*k.Group)
		}
		if g == Group && (k.Kind == "HTTPRoute" || k.Kind == "GRPCRoute") {
			ok = append(ok, gwv1.RouteGroupKind{Group: ptr(gwv1.Group(Group)), Kind: k.Kind})
		} else {
			bad = append(bad, g+"/"+string(k.Kind))
		}
	}
	return ok, bad
}

// certificates adds the kubernetes.io/tls Secrets of HTTPS listener l to
// the pool; it returns why one cannot be used, and the reason.
func (t *translator) certificates(gw *gwv1.Gateway, l *gwv1.Listener) (string, gwv1.ListenerConditionReason) {
	if l.TLS == nil || (l.TLS.Mode != nil && *l.TLS.Mode != gwv1.TLSModeTerminate) {
		return "Agimo terminates TLS (mode Terminate) on HTTPS listeners", gwv1.ListenerReasonInvalidCertificateRef
	}
	if len(l.TLS.CertificateRefs) == 0 {
		return "no certificateRefs", gwv1.ListenerReasonInvalidCertificateRef
	}
	var msgs []string
	reason := gwv1.ListenerReasonInvalidCertificateRef
	for _, ref := range l.TLS.CertificateRefs {
		ns := gw.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		switch {
		case ref.Group != nil && *ref.Group != "" || ref.Kind != nil && *ref.Kind != "Secret":
			msgs = append(msgs, fmt.Sprintf("certificateRef %s is not a core Secret", ref.Name))
		case ns != gw.Namespace && !t.grants("Gateway", gw.Namespace, "Secret", ns, string(ref.Name)):
			msgs = append(msgs, fmt.Sprintf("Secret %s/%s is in another namespace and no ReferenceGrant there allows it", ns, ref.Name))
			reason = gwv1.ListenerReasonRefNotPermitted
		default:
			var sec *corev1.Secret
			if t.snap.Secret != nil {
				sec = t.snap.Secret(ns, string(ref.Name))
			}
			switch {
			case sec == nil:
				msgs = append(msgs, fmt.Sprintf("Secret %s/%s not found", ns, ref.Name))
			case sec.Type != corev1.SecretTypeTLS:
				msgs = append(msgs, fmt.Sprintf("Secret %s/%s is of type %q, not %q", ns, ref.Name, sec.Type, corev1.SecretTypeTLS))
			default:
				id := ns + "/" + string(ref.Name)
				if !slices.Contains(t.res.TLSSecrets, id) && !slices.Contains(t.base.TLSSecrets, id) {
					t.res.TLSSecrets = append(t.res.TLSSecrets, id)
				}
			}
		}
	}
	return strings.Join(msgs, "; "), reason
}

// allows reports whether listener ls of gw takes a route of kind in
// namespace ns (allowedRoutes).
func (t *translator) allows(gw *gwv1.Gateway, ls *listener, kind, ns string) bool {
	if !slices.ContainsFunc(ls.kinds, func(k gwv1.RouteGroupKind) bool { return string(k.Kind) == kind }) {
		return false
	}
	from := gwv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := ls.l.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return ns == gw.Namespace
	case gwv1.NamespacesFromSelector:
		s, err := metav1.LabelSelectorAsSelector(sel)
		if sel == nil || err != nil || t.snap.Namespace == nil {
			return false
		}
		n := t.snap.Namespace(ns)
		return n != nil && s.Matches(labels.Set(n.Labels))
	}
	return false
}
