package gateway

import (
	"context"
	"slices"
	"strings"

	"github.com/agimo/agimo/ingress"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// withTimes returns want with each condition's LastTransitionTime taken
// from the same type in have when its status is unchanged, else now
// (metav1.Condition: "the last time the condition transitioned").
func withTimes(have, want []metav1.Condition, now metav1.Time) []metav1.Condition {
	out := make([]metav1.Condition, len(want))
	for i, c := range want {
		c.LastTransitionTime = now
		if j := slices.IndexFunc(have, func(h metav1.Condition) bool { return h.Type == c.Type }); j >= 0 && have[j].Status == c.Status {
			c.LastTransitionTime = have[j].LastTransitionTime
		}
		out[i] = c
	}
	return out
}

// gatewayStatus is want with have's transition times kept.
func gatewayStatus(have, want gwv1.GatewayStatus, now metav1.Time) gwv1.GatewayStatus {
	out := want
	out.AttachedListenerSets = have.AttachedListenerSets
	out.Conditions = withTimes(have.Conditions, want.Conditions, now)
	out.Listeners = make([]gwv1.ListenerStatus, len(want.Listeners))
	for i, l := range want.Listeners {
		var old []metav1.Condition
		if j := slices.IndexFunc(have.Listeners, func(h gwv1.ListenerStatus) bool { return h.Name == l.Name }); j >= 0 {
			old = have.Listeners[j].Conditions
		}
		l.Conditions = withTimes(old, l.Conditions, now)
		out.Listeners[i] = l
	}
	return out
}

// routeStatus is have with Agimo's parents replaced by want (other
// controllers' entries are theirs), transition times kept.
func routeStatus(have gwv1.RouteStatus, want []gwv1.RouteParentStatus, now metav1.Time) gwv1.RouteStatus {
	out := gwv1.RouteStatus{Parents: []gwv1.RouteParentStatus{}}
	for _, p := range have.Parents {
		if p.ControllerName != ControllerName {
			out.Parents = append(out.Parents, p)
		}
	}
	for _, p := range want {
		j := slices.IndexFunc(have.Parents, func(h gwv1.RouteParentStatus) bool {
			return h.ControllerName == ControllerName && equality.Semantic.DeepEqual(h.ParentRef, p.ParentRef)
		})
		var old []metav1.Condition
		if j >= 0 {
			old = have.Parents[j].Conditions
		}
		p.Conditions = withTimes(old, p.Conditions, now)
		out.Parents = append(out.Parents, p)
	}
	return out
}

// same compares statuses as the API server stores them: an empty list is
// an absent one (equality.Semantic).
func same(a, b any) bool { return equality.Semantic.DeepEqual(a, b) }

// WriteStatus writes the status of the last Merge's objects where it
// differs, if this replica leads (Options.Leading). Failures are logged:
// the next change retries.
func (c *Controller) WriteStatus(ctx context.Context) {
	if c.opts.Leading != nil && !c.opts.Leading() {
		return
	}
	c.mu.Lock()
	st, ok := c.status, c.merged
	c.mu.Unlock()
	if !ok {
		return
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	now := metav1.Now()
	api := c.opts.Client.GatewayV1()
	warn := func(err error, kind, ns, name string) {
		c.opts.Log.Warn().Err(err).Str("kind", kind).Str("object", strings.TrimPrefix(ns+"/"+name, "/")).Msg("gateway: status not written")
	}
	if gc := st.Class; gc != nil {
		if cur, err := c.classes.Get(gc.Name); err == nil {
			want := cur.Status
			want.Conditions = withTimes(cur.Status.Conditions, st.ClassConds, now)
			k := writeKey{"GatewayClass", types.NamespacedName{Name: gc.Name}}
			if !same(cur.Status, want) && !c.stale(k, cur.ResourceVersion, want) {
				up := cur.DeepCopy()
				up.Status = want
				if _, err := api.GatewayClasses().UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
					warn(err, "GatewayClass", "", gc.Name)
				} else {
					c.wrote(k, cur.ResourceVersion, want)
				}
			}
		}
	}
	for key, want := range st.Gateways {
		cur, err := c.gateways.Gateways(key.Namespace).Get(key.Name)
		if err != nil {
			continue
		}
		k := writeKey{"Gateway", key}
		if w := gatewayStatus(cur.Status, want, now); !same(cur.Status, w) && !c.stale(k, cur.ResourceVersion, w) {
			up := cur.DeepCopy()
			up.Status = w
			if _, err := api.Gateways(key.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
				warn(err, "Gateway", key.Namespace, key.Name)
			} else {
				c.wrote(k, cur.ResourceVersion, w)
			}
		}
	}
	hrs, _ := c.httpRoutes.List(labels.Everything())
	for _, hr := range hrs {
		k := writeKey{"HTTPRoute", types.NamespacedName{Namespace: hr.Namespace, Name: hr.Name}}
		w := routeStatus(hr.Status.RouteStatus, st.Routes[RouteKey(k)], now)
		if same(hr.Status.RouteStatus, w) || c.stale(k, hr.ResourceVersion, w) {
			continue
		}
		up := hr.DeepCopy()
		up.Status.RouteStatus = w
		if _, err := api.HTTPRoutes(hr.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
			warn(err, "HTTPRoute", hr.Namespace, hr.Name)
		} else {
			c.wrote(k, hr.ResourceVersion, w)
		}
	}
	grs, _ := c.grpcRoutes.List(labels.Everything())
	for _, gr := range grs {
		k := writeKey{"GRPCRoute", types.NamespacedName{Namespace: gr.Namespace, Name: gr.Name}}
		w := routeStatus(gr.Status.RouteStatus, st.Routes[RouteKey(k)], now)
		if same(gr.Status.RouteStatus, w) || c.stale(k, gr.ResourceVersion, w) {
			continue
		}
		up := gr.DeepCopy()
		up.Status.RouteStatus = w
		if _, err := api.GRPCRoutes(gr.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
			warn(err, "GRPCRoute", gr.Namespace, gr.Name)
		} else {
			c.wrote(k, gr.ResourceVersion, w)
		}
	}
}

// writeKey names an object whose status was written.
type writeKey RouteKey

// written is a status written over the object of resourceVersion rv.
type written struct {
	rv     string
	status any
}

// stale reports whether want was written already over the version of
// the object the informer's cache still holds: the cache lags the
// write, and writing again would only conflict.
func (c *Controller) stale(k writeKey, rv string, want any) bool {
	w, ok := c.written[k]
	return ok && w.rv == rv && untimed.DeepEqual(w.status, want)
}

// untimed compares statuses but not their conditions' transition times,
// which a write over a stale cache sets anew.
var untimed = conversion.EqualitiesOrDie(func(a, b metav1.Time) bool { return true })

func (c *Controller) wrote(k writeKey, rv string, status any) {
	if c.written == nil {
		c.written = make(map[writeKey]written)
	}
	c.written[k] = written{rv: rv, status: status}
}

// Addresses returns what a Gateway's status.addresses says: the
// addresses an Ingress's status would publish (ingress.Published), an IP
// where an entry has one, else its host name.
func (c *Controller) Addresses() []gwv1.GatewayStatusAddress {
	var out []gwv1.GatewayStatusAddress
	for _, a := range ingress.Published(c.opts.PublishAddress, c.opts.PublishService, c.services) {
		switch {
		case a.IP != "":
			out = append(out, gwv1.GatewayStatusAddress{Type: ptr(gwv1.IPAddressType), Value: a.IP})
		case a.Hostname != "":
			out = append(out, gwv1.GatewayStatusAddress{Type: ptr(gwv1.HostnameAddressType), Value: a.Hostname})
		}
	}
	return out
}
