package gateway

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/ingress"
)

// route is an HTTPRoute or a GRPCRoute, reduced to what both share.
type route struct {
	kind      string // "HTTPRoute", "GRPCRoute"
	meta      *metav1.ObjectMeta
	parents   []gwv1.ParentReference
	hostnames []gwv1.Hostname
	rules     []rule
	protocol  string // conf.ProtocolAuto, or conf.ProtocolH2C for gRPC
}

// rule is one of a route's rules: its matches, filters and backends.
type rule struct {
	matches []match
	filters *conf.Filters
	// bad says why the rule's filters cannot be applied: its requests
	// then get 500 (Gateway API: a filter that cannot be applied MUST
	// NOT be skipped).
	bad      string
	backends []backend
}

// match is one match of a rule: a path and conditions, or why it cannot
// be served (bad: the match is dropped).
type match struct {
	path   string
	exact  bool
	extras conf.Extras // Method, Headers, Query
	bad    string
}

// backend is one backendRef.
type backend struct {
	ref     gwv1.BackendObjectReference
	weight  int32
	filters *conf.Filters
	bad     string
}

// resolved is a backend checked: its entry without host, path and
// matches, or why it answers 500 (reason: a ResolvedRefs reason).
type resolved struct {
	s      conf.Service
	weight int
	reason gwv1.RouteConditionReason
	msg    string
}

// route attaches r to its parents of Agimo's class, records its status
// there and adds its entries for the hosts it gained.
func (t *translator) route(r route) {
	var parents []gwv1.RouteParentStatus
	hosts := make(map[string]bool)
	for _, pr := range r.parents {
		gw, ok := t.parent(r, pr)
		if !ok {
			continue
		}
		parents = append(parents, gwv1.RouteParentStatus{ParentRef: pr, ControllerName: ControllerName,
			Conditions: []metav1.Condition{t.attach(r, pr, gw, hosts)}})
	}
	key := RouteKey{Kind: r.kind, NamespacedName: types.NamespacedName{Namespace: r.meta.Namespace, Name: r.meta.Name}}
	if len(parents) == 0 {
		return
	}
	backends := make([][]resolved, len(r.rules))
	reason, msg := gwv1.RouteReasonResolvedRefs, "All references resolved"
	for i, ru := range r.rules {
		for _, b := range ru.backends {
			rb := t.backend(r, b)
			if rb.reason != "" && reason == gwv1.RouteReasonResolvedRefs {
				reason, msg = rb.reason, fmt.Sprintf("rules[%d]: %s", i, rb.msg)
			}
			backends[i] = append(backends[i], rb)
		}
	}
	var invalid, conflicts []string
	if len(hosts) > 0 {
		invalid, conflicts = t.entries(r, backends, hosts)
	}
	gen := r.meta.Generation
	for i := range parents {
		c := &parents[i].Conditions
		*c = append(*c, cond(gwv1.RouteConditionResolvedRefs, reason == gwv1.RouteReasonResolvedRefs, reason, gen, "%s", msg))
		if (*c)[0].Status != metav1.ConditionTrue {
			continue
		}
		if len(invalid) > 0 {
			*c = append(*c, cond(gwv1.RouteConditionPartiallyInvalid, true, gwv1.RouteReasonUnsupportedValue, gen, "%s", strings.Join(invalid, "; ")))
		}
		if len(conflicts) > 0 {
			*c = append(*c, cond("Conflicted", true, "RouteConflict", gen, "%s", strings.Join(conflicts, "; ")))
		}
	}
	t.res.Status.Routes[key] = parents
}

// parent returns the Gateway of Agimo's class pr refers to, if it does.
func (t *translator) parent(r route, pr gwv1.ParentReference) (*gateway, bool) {
	if pr.Group != nil && string(*pr.Group) != Group || pr.Kind != nil && *pr.Kind != "Gateway" {
		return nil, false
	}
	ns := r.meta.Namespace
	if pr.Namespace != nil {
		ns = string(*pr.Namespace)
	}
	gw, ok := t.gateways[types.NamespacedName{Namespace: ns, Name: string(pr.Name)}]
	return gw, ok
}

// attach attaches r to the listeners of gw that pr selects, allow it and
// share a hostname with it, adding the hosts to hosts; it returns the
// parent's Accepted condition.
func (t *translator) attach(r route, pr gwv1.ParentReference, gw *gateway, hosts map[string]bool) metav1.Condition {
	gen := r.meta.Generation
	selected, allowed, attached := 0, 0, 0
	for i := range gw.listeners {
		ls := &gw.listeners[i]
		if pr.SectionName != nil && *pr.SectionName != ls.l.Name || pr.Port != nil && *pr.Port != ls.l.Port {
			continue
		}
		selected++
		if !ls.accepted || !t.allows(gw.gw, ls, r.kind, r.meta.Namespace) {
			continue
		}
		allowed++
		hs := intersect(ls.l.Hostname, r.hostnames)
		if len(hs) == 0 {
			continue
		}
		attached++
		ls.attached++
		for _, h := range hs {
			hosts[h] = true
		}
	}
	switch {
	case selected == 0:
		return cond(gwv1.RouteConditionAccepted, false, gwv1.RouteReasonNoMatchingParent, gen, "no listener of Gateway %s/%s matches sectionName and port", gw.gw.Namespace, gw.gw.Name)
	case allowed == 0:
		return cond(gwv1.RouteConditionAccepted, false, gwv1.RouteReasonNotAllowedByListeners, gen, "no valid listener of Gateway %s/%s allows this route (allowedRoutes)", gw.gw.Namespace, gw.gw.Name)
	case attached == 0:
		return cond(gwv1.RouteConditionAccepted, false, gwv1.RouteReasonNoMatchingListenerHostname, gen, "no listener hostname of Gateway %s/%s matches the route's hostnames", gw.gw.Namespace, gw.gw.Name)
	}
	return cond(gwv1.RouteConditionAccepted, true, gwv1.RouteReasonAccepted, gen, "Route is served by Agimo")
}

// backend resolves b, a backendRef of r: its Service, port and settings.
func (t *translator) backend(r route, b backend) resolved {
	rb := resolved{weight: int(b.weight)}
	fail := func(reason gwv1.RouteConditionReason, format string, args ...any) resolved {
		rb.reason, rb.msg = reason, fmt.Sprintf(format, args...)
		return rb
	}
	ref := b.ref
	if ref.Group != nil && *ref.Group != "" || ref.Kind != nil && *ref.Kind != "Service" {
		return fail(gwv1.RouteReasonInvalidKind, "backendRef %s: Agimo supports Service backends only", ref.Name)
	}
	ns := r.meta.Namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	if ns != r.meta.Namespace && !t.grants(r.kind, r.meta.Namespace, "Service", ns, string(ref.Name)) {
		return fail(gwv1.RouteReasonRefNotPermitted, "backendRef Service %s/%s is in another namespace and no ReferenceGrant there allows it", ns, ref.Name)
	}
	var svc *corev1.Service
	if t.snap.Service != nil {
		svc = t.snap.Service(ns, string(ref.Name))
	}
	if svc == nil {
		return fail(gwv1.RouteReasonBackendNotFound, "Service %s/%s not found", ns, ref.Name)
	}
	if ref.Port == nil {
		return fail(gwv1.RouteReasonUnsupportedValue, "backendRef Service %s/%s: port is required", ns, ref.Name)
	}
	if b.bad != "" {
		return fail(gwv1.RouteReasonUnsupportedValue, "backendRef Service %s/%s: %s", ns, ref.Name, b.bad)
	}
	rb.s = conf.Service{Namespace: ns, ServiceName: string(ref.Name), ServicePort: int(*ref.Port), Protocol: r.protocol}
	t.settings(svc).Apply(&rb.s)
	rb.s.Filters = b.filters
	return rb
}

// settings returns a backend Service's annotation settings, once per
// translation; invalid ones are a Problem and the previous ones stay.
func (t *translator) settings(svc *corev1.Service) ingress.Settings {
	key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	if st, ok := t.res.Settings[key]; ok {
		return st
	}
	st, err := ingress.ParseSettings(t.base, svc)
	if err != nil {
		t.res.Problems = append(t.res.Problems, Problem{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name,
			Reason: "BadAnnotation", Message: err.Error() + "; the previous settings stay"})
		st = t.prev[key]
	}
	t.res.Settings[key] = st
	return st
}

// claimKey is what two entries must share to overlap: host, path (exact
// or prefix) and match conditions.
func claimKey(s *conf.Service, path string) string {
	return s.Host + " " + path + " " + s.MatchKey()
}

// rulePath is the one path of an entry of a route: "/api" for a prefix,
// "=/api" for an exact path.
func rulePath(s *conf.Service) string {
	if len(s.ExactPaths) > 0 {
		return "=" + s.ExactPaths[0]
	}
	return s.Paths[0]
}

// claimBase records the claims of base.Services[i].
func (t *translator) claimBase(i int, s *conf.Service) {
	c := claim{base: i, source: cmpOr(s.Source, "the config file"), created: metav1.NewTime(s.Created)}
	for _, p := range s.Paths {
		t.claims[claimKey(s, p)] = c
	}
	for _, p := range s.ExactPaths {
		t.claims[claimKey(s, "="+p)] = c
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// hostOf names a host in messages: "*" is the catch-all.
func hostOf(h string) string {
	if h == conf.CatchAllHost {
		return "* (any host)"
	}
	return h
}

// entries adds r's entries for hosts, each rule's match on each host:
// one entry per backend (sharing Extras.Rule, weighted), or one that
// answers alone (a redirect, a 500). It returns the matches it could not
// serve and those that lost to an earlier claim, for r's status.
func (t *translator) entries(r route, backends [][]resolved, hosts map[string]bool) (invalid, conflicts []string) {
	hs := make([]string, 0, len(hosts))
	for h := range hosts {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	source := r.kind + " " + r.meta.Namespace + "/" + r.meta.Name
	for i, ru := range r.rules {
		if ru.bad != "" {
			invalid = append(invalid, fmt.Sprintf("rules[%d]: %s; its requests get 500", i, ru.bad))
		}
		for j, m := range ru.matches {
			if m.bad != "" {
				invalid = append(invalid, fmt.Sprintf("rules[%d].matches[%d]: %s", i, j, m.bad))
				continue
			}
			for _, h := range hs {
				group := t.group(r, ru, m, backends[i], h, source, fmt.Sprintf("%s rules[%d].matches[%d] %s", source, i, j, h))
				if len(group) == 0 {
					continue
				}
				var err error
				for k := range group {
					if group[k], err = t.base.CheckService(group[k]); err != nil {
						break
					}
				}
				if err != nil {
					invalid = append(invalid, fmt.Sprintf("rules[%d].matches[%d] on %s: %s", i, j, hostOf(h), strings.ReplaceAll(err.Error(), "services[0].", "")))
					continue
				}
				if lost := t.claim(r, &group[0]); lost != "" {
					conflicts = append(conflicts, fmt.Sprintf("rules[%d].matches[%d]: %s", i, j, lost))
					continue
				}
				t.res.Services = append(t.res.Services, group...)
			}
		}
	}
	return invalid, conflicts
}

// group returns the entries of match m of rule ru on host h.
func (t *translator) group(r route, ru rule, m match, rbs []resolved, h, source, id string) []conf.Service {
	base := conf.Service{Host: h, Namespace: r.meta.Namespace, Extras: m.extras, Protocol: r.protocol}
	base.Source, base.Created = source, r.meta.CreationTimestamp.Time
	// Gateway API: "*.example.com" matches "a.example.com" and
	// "a.b.example.com" alike (HTTPRoute hostnames).
	base.DeepWildcard = true
	if m.exact {
		base.ExactPaths = []string{m.path}
	} else {
		base.Paths = []string{m.path}
	}
	fixed := func(w int) conf.Service {
		s := base
		s.Fixed, s.Weight = 500, w
		return s
	}
	switch {
	case ru.bad != "":
		return []conf.Service{fixed(0)}
	case ru.filters != nil && ru.filters.Redirect != nil:
		s := base
		s.Filters = ru.filters
		return []conf.Service{s}
	}
	var out []conf.Service
	total := 0
	for _, rb := range rbs {
		if rb.weight <= 0 {
			continue // no traffic (Gateway API: weight 0)
		}
		total += rb.weight
		if rb.reason != "" {
			s := fixed(rb.weight) // its share of requests gets 500
			s.Rule = id
			out = append(out, s)
			continue
		}
		s := rb.s
		s.Host, s.Paths, s.ExactPaths, s.Extras = base.Host, base.Paths, base.ExactPaths, base.Extras
		s.Source, s.Created = base.Source, base.Created
		s.Rule, s.Weight = id, rb.weight
		s.Filters = merge(ru.filters, rb.s.Filters)
		s.ProbePaths = slices.DeleteFunc(slices.Clone(s.ProbePaths), func(pp string) bool {
			return len(out) > 0 || s.MatchKey() != "" || m.exact && pp != m.path || !m.exact && !under(pp, m.path)
		})
		out = append(out, s)
	}
	if total == 0 {
		// No backend, or all weigh 0: 500 (HTTPRoute backendRefs).
		return []conf.Service{fixed(0)}
	}
	return out
}

// claim claims s's host, path and matches for r, or says who has them.
// A younger Ingress's entry is displaced.
func (t *translator) claim(r route, s *conf.Service) string {
	key := claimKey(s, rulePath(s))
	me := claim{base: -1, source: s.Source, created: *r.meta.CreationTimestamp.DeepCopy()}
	if c, taken := t.claims[key]; taken {
		if c.base < 0 || !strings.HasPrefix(c.source, "Ingress ") || !me.created.Before(&c.created) {
			return fmt.Sprintf("host %q path %q with these matches is already served by %s; ignored", hostOf(s.Host), rulePath(s), c.source)
		}
		ns, name, _ := strings.Cut(strings.TrimPrefix(c.source, "Ingress "), "/")
		t.res.Displaced = append(t.res.Displaced, c.base)
		t.res.Problems = append(t.res.Problems, Problem{Kind: "Ingress", Namespace: ns, Name: name, Reason: "RouteConflict",
			Message: fmt.Sprintf("host %q path %q is served by the older %s; this rule is ignored", hostOf(s.Host), rulePath(s), s.Source)})
	}
	t.claims[key] = me
	return ""
}

// probePaths keeps on each route entry the probe paths routed to it:
// one under a longer prefix, or an exact path, of its host goes there.
func (t *translator) probePaths() {
	for i := range t.res.Services {
		s := &t.res.Services[i]
		s.ProbePaths = slices.DeleteFunc(s.ProbePaths, func(pp string) bool {
			if _, ok := t.claims[s.Host+" ="+pp+" "]; ok {
				return rulePath(s) != "="+pp
			}
			best := ""
			for k := range t.claims {
				h, rest, _ := strings.Cut(k, " ")
				p, m, _ := strings.Cut(rest, " ")
				if h == s.Host && m == "" && !strings.HasPrefix(p, "=") && under(pp, p) && len(p) > len(best) {
					best = p
				}
			}
			return best != rulePath(s)
		})
	}
}

// under reports whether path is under prefix on segment boundaries.
func under(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
}
