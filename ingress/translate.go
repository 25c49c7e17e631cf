// Package ingress serves Kubernetes Ingresses (networking.k8s.io/v1) of
// Agimo's IngressClass (issue 12). It does not route: it translates the
// Ingresses it serves into extra conf.Service entries, the same thing a
// [[services]] entry of the TOML file is, which main merges with the
// file's and applies through the ordinary reload (core.Reload), so parked
// requests survive and unchanged routes carry over. Scale-to-zero
// settings come from annotations on each backend Service
// (annotations.go). The Controller (controller.go) watches IngressClasses,
// Ingresses and Services, asks for a reload on every change and writes
// each served Ingress's status.loadBalancer.
package ingress

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agimo/agimo/conf"
)

// ControllerName is the spec.controller of the IngressClasses Agimo serves.
const ControllerName = "agimo.dev/ingress-controller"

// DefaultClassAnnotation marks the cluster's default IngressClass, which
// also takes Ingresses without spec.ingressClassName.
const DefaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"

// Snapshot is the cluster state a translation reads.
type Snapshot struct {
	Classes   []*networkingv1.IngressClass
	Ingresses []*networkingv1.Ingress
	// Service returns a Service by namespace and name, nil if none.
	Service func(namespace, name string) *corev1.Service
}

// Problem is something of an object that could not be served as asked:
// logged, and reported as a Warning Event on the object.
type Problem struct {
	Kind      string // "Ingress" or "Service"
	Namespace string
	Name      string
	Reason    string // an Event reason: "RouteConflict", "BadAnnotation", "BadRule"
	Message   string
}

// Result is one translation.
type Result struct {
	// Services are the routes, in the order of the Ingresses that own
	// them (oldest first), ready for conf.Config.WithServices.
	Services []conf.Service
	// Settings are the backend Services' annotation settings in force,
	// to pass to the next translation as prev.
	Settings map[types.NamespacedName]Settings
	// Served are the Ingresses of Agimo's class.
	Served   []*networkingv1.Ingress
	Problems []Problem
}

// Serves reports whether the Ingress ing is of class (the IngressClass
// of that name with Agimo's controller), or has no class and that class
// is the default.
func Serves(class string, classes []*networkingv1.IngressClass, ing *networkingv1.Ingress) bool {
	var ours *networkingv1.IngressClass
	for _, ic := range classes {
		if ic.Name == class && ic.Spec.Controller == ControllerName {
			ours = ic
		}
	}
	if ours == nil {
		return false
	}
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName == class
	}
	// The deprecated annotation is still set by some tools: it names the
	// class when the field is absent.
	if a, ok := ing.Annotations["kubernetes.io/ingress.class"]; ok {
		return a == class
	}
	return ours.Annotations[DefaultClassAnnotation] == "true"
}

// Translate turns the Ingresses of base.IngressClass in snap into service
// entries valid in base (the TOML file's config, already validated), whose
// own (host, path) pairs come first: of two claims on one pair, the TOML
// entry wins, then the oldest Ingress (creationTimestamp, then
// namespace/name). prev are the previous translation's Settings: a
// backend whose annotations are now invalid keeps them.
func Translate(base *conf.Config, snap Snapshot, prev map[types.NamespacedName]Settings) Result {
	res := Result{Settings: make(map[types.NamespacedName]Settings)}
	if base.IngressClass == "" {
		return res
	}
	claimed := make(map[string]string) // "host path" -> who
	for _, s := range base.Services {
		for _, p := range s.Paths {
			claimed[s.Host+" "+p] = "the config file"
		}
		for _, p := range s.ExactPaths {
			claimed[s.Host+" ="+p] = "the config file"
		}
	}
	for _, ing := range snap.Ingresses {
		if Serves(base.IngressClass, snap.Classes, ing) {
			res.Served = append(res.Served, ing)
		}
	}
	slices.SortStableFunc(res.Served, func(a, b *networkingv1.Ingress) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	t := translator{base: base, snap: snap, prev: prev, res: &res}
	for _, ing := range res.Served {
		for _, s := range t.ingress(ing) {
			key := s.Host + " " + RulePath(&s)
			if who, taken := claimed[key]; taken {
				t.problem(ing, "RouteConflict", "host %q path %q is already served by %s; this rule is ignored", hostOf(s.Host), RulePath(&s), who)
				continue
			}
			claimed[key] = "Ingress " + ing.Namespace + "/" + ing.Name
			res.Services = append(res.Services, s)
		}
	}
	// A probe path goes to the entry with its host's longest prefix
	// (conf requires it): each entry keeps those routed to it.
	for i := range res.Services {
		s := &res.Services[i]
		s.ProbePaths = slices.DeleteFunc(s.ProbePaths, func(pp string) bool {
			if claimed[s.Host+" ="+pp] != "" {
				return RulePath(s) != "="+pp // an exact path wins
			}
			best := ""
			for k := range claimed {
				h, p, _ := strings.Cut(k, " ")
				if h == s.Host && !strings.HasPrefix(p, "=") && under(pp, p) && len(p) > len(best) {
					best = p
				}
			}
			return best != RulePath(s)
		})
	}
	return res
}

// RulePath is the one path of an entry Translate made: "/api" for a
// prefix, "=/api" for an exact path.
func RulePath(s *conf.Service) string {
	if len(s.ExactPaths) > 0 {
		return "=" + s.ExactPaths[0]
	}
	return s.Paths[0]
}

// hostOf names a host in messages: "*" is the catch-all.
func hostOf(h string) string {
	if h == conf.CatchAllHost {
		return "* (any host)"
	}
	return h
}

type translator struct {
	base *conf.Config
	snap Snapshot
	prev map[types.NamespacedName]Settings
	res  *Result
}

func (t *translator) problem(ing *networkingv1.Ingress, reason, format string, args ...any) {
	t.res.Problems = append(t.res.Problems, Problem{Kind: "Ingress", Namespace: ing.Namespace, Name: ing.Name,
		Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// ingress returns ing's entries, one per (host, path), each validated.
func (t *translator) ingress(ing *networkingv1.Ingress) []conf.Service {
	tlsFor := func(host string) string {
		for _, tl := range ing.Spec.TLS {
			// A tls section without hosts covers every host of the Ingress.
			if tl.SecretName != "" && (len(tl.Hosts) == 0 || slices.Contains(tl.Hosts, host)) {
				return tl.SecretName
			}
		}
		return ""
	}
	var out []conf.Service
	add := func(host, path string, exact bool, b *networkingv1.IngressBackend, where string) {
		s, ok := t.backend(ing, b, where)
		if !ok {
			return
		}
		s.Host, s.Paths = host, []string{path}
		if exact {
			s.Paths, s.ExactPaths = nil, []string{path}
		}
		// The Service's probe paths are its own; each rule keeps those
		// it routes (conf requires a probe path to reach its entry).
		s.ProbePaths = slices.DeleteFunc(slices.Clone(s.ProbePaths), func(pp string) bool {
			return exact && pp != path || !exact && !under(pp, path)
		})
		if host != conf.CatchAllHost {
			s.TLSSecret = tlsFor(host)
		}
		// For conflicts with Gateway API routes (package gateway): the
		// oldest object wins.
		s.Source, s.Created = "Ingress "+ing.Namespace+"/"+ing.Name, ing.CreationTimestamp.Time
		v, err := t.base.CheckService(s)
		if err != nil {
			t.problem(ing, "BadRule", "%s: %v", where, stripKey(err))
			return
		}
		out = append(out, v)
	}
	if b := ing.Spec.DefaultBackend; b != nil {
		// The default backend takes what no rule of any host takes: the
		// catch-all host, all paths.
		add(conf.CatchAllHost, "/", false, b, "defaultBackend")
	}
	for i, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		host := r.Host
		if host == "" {
			host = conf.CatchAllHost // a rule without host matches every host
		}
		for j, p := range r.HTTP.Paths {
			path := p.Path
			if path == "" {
				path = "/"
			}
			// Exact matches the raw path byte for byte (route.Match);
			// Prefix and ImplementationSpecific are segment prefixes.
			exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
			add(host, path, exact, &p.Backend, fmt.Sprintf("rules[%d].http.paths[%d]", i, j))
		}
	}
	return out
}

// stripKey drops the "services[0]." of an error from CheckService, which
// validated the entry alone.
func stripKey(err error) string {
	return strings.ReplaceAll(err.Error(), "services[0].", "")
}

// backend resolves b, a backend of ing, into an entry without host and
// paths: the Service, its port number, the Service's annotation settings.
func (t *translator) backend(ing *networkingv1.Ingress, b *networkingv1.IngressBackend, where string) (conf.Service, bool) {
	if b.Service == nil {
		t.problem(ing, "BadRule", "%s: only Service backends are supported", where)
		return conf.Service{}, false
	}
	s := conf.Service{Namespace: ing.Namespace, ServiceName: b.Service.Name, ServicePort: int(b.Service.Port.Number),
		Extras: conf.Extras{Source: "Ingress " + ing.Namespace + "/" + ing.Name}}
	var svc *corev1.Service
	if t.snap.Service != nil {
		svc = t.snap.Service(ing.Namespace, b.Service.Name)
	}
	if name := b.Service.Port.Name; name != "" {
		if svc == nil {
			t.problem(ing, "BadRule", "%s: Service %s/%s not found, so its port %q cannot be resolved", where, ing.Namespace, b.Service.Name, name)
			return conf.Service{}, false
		}
		for _, p := range svc.Spec.Ports {
			if p.Name == name {
				s.ServicePort = int(p.Port)
			}
		}
		if s.ServicePort == 0 {
			t.problem(ing, "BadRule", "%s: Service %s/%s has no port named %q", where, ing.Namespace, b.Service.Name, name)
			return conf.Service{}, false
		}
	}
	t.settings(svc, ing.Namespace, b.Service.Name).Apply(&s)
	return s, true
}

// settings returns the backend Service's annotation settings, once per
// translation; invalid ones are a Problem and the previous ones stay.
func (t *translator) settings(svc *corev1.Service, ns, name string) Settings {
	key := types.NamespacedName{Namespace: ns, Name: name}
	if st, ok := t.res.Settings[key]; ok {
		return st
	}
	st := Settings{}
	if svc != nil {
		var err error
		if st, err = ParseSettings(t.base, svc); err != nil {
			t.res.Problems = append(t.res.Problems, Problem{Kind: "Service", Namespace: ns, Name: name,
				Reason: "BadAnnotation", Message: err.Error() + "; the previous settings stay"})
			st = t.prev[key]
		}
	}
	t.res.Settings[key] = st
	return st
}

// under reports whether path is under prefix on segment boundaries, as
// route.Match.Accepts decides.
func under(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
}
