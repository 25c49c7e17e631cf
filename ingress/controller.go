package ingress

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/agimo/agimo/conf"
)

// DefaultDebounce gathers a burst of changes (kubectl apply of several
// objects) into one reload.
const DefaultDebounce = 100 * time.Millisecond

// Options configure a Controller.
type Options struct {
	Client kubernetes.Interface
	Log    zerolog.Logger
	// PublishService, "NAMESPACE/NAME", is the Service whose LoadBalancer
	// ingress (else ClusterIP) is written to each served Ingress's
	// status.loadBalancer; PublishAddress, an IP or a host name, is
	// written instead when set.
	PublishService, PublishAddress string
	// Changed is called, debounced, after any change to the watched
	// objects: the caller then merges (Merge) and reloads.
	Changed func()
	// Leading reports whether this replica writes status (package
	// leader); nil: always.
	Leading func() bool
	// Recorder gets the Warning Events; nil: one sending to Client.
	Recorder record.EventRecorder
	// Debounce defaults to DefaultDebounce.
	Debounce time.Duration
}

// Controller watches IngressClasses, Ingresses and Services in every
// namespace. Create it with New, Start it, then call Merge for each
// reload; Run writes statuses and calls Changed until its context ends.
type Controller struct {
	opts      Options
	factory   informers.SharedInformerFactory
	classes   netlisters.IngressClassLister
	ingresses netlisters.IngressLister
	services  listersv1.ServiceLister
	changes   chan struct{}
	stopBcast func()

	mu    sync.Mutex // Merge's state, between reloads
	class string     // the IngressClass of the last merge
	// classFound: that IngressClass exists with Agimo's controller (its
	// absence is logged when it starts).
	classFound bool
	prev       map[types.NamespacedName]Settings
	routes     map[string]bool // "host path -> ns/svc:port" of the last merge
	problems   map[Problem]bool
}

// New makes a controller; nothing runs before Start.
func New(opts Options) *Controller {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	c := &Controller{opts: opts, changes: make(chan struct{}, 1), stopBcast: func() {}, classFound: true}
	if c.opts.Recorder == nil {
		b := record.NewBroadcaster()
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: opts.Client.CoreV1().Events("")})
		c.stopBcast = b.Shutdown
		c.opts.Recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "agimo"})
	}
	c.factory = informers.NewSharedInformerFactory(opts.Client, 0)
	c.classes = c.factory.Networking().V1().IngressClasses().Lister()
	c.ingresses = c.factory.Networking().V1().Ingresses().Lister()
	c.services = c.factory.Core().V1().Services().Lister()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.poke() },
		UpdateFunc: func(_, _ any) { c.poke() },
		DeleteFunc: func(any) { c.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		c.factory.Networking().V1().IngressClasses().Informer(),
		c.factory.Networking().V1().Ingresses().Informer(),
		c.factory.Core().V1().Services().Informer(),
	} {
		if _, err := inf.AddEventHandler(h); err != nil {
			opts.Log.Error().Err(err).Msg("ingress: add event handler")
		}
	}
	return c
}

// Resync has Run merge and write every status again, as a new leader
// must.
func (c *Controller) Resync() { c.poke() }

func (c *Controller) poke() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// Start starts the informers and waits for their first sync, or ctx.
func (c *Controller) Start(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	for typ, ok := range c.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("ingress: %v not synced: %w", typ, context.Cause(ctx))
		}
	}
	c.opts.Log.Info().Msg("ingress: informer caches synced")
	return nil
}

// Close stops the informers and the event broadcaster and waits for them;
// the context given to Start must be done (or Start never called).
func (c *Controller) Close() {
	c.factory.Shutdown()
	c.stopBcast()
}

// Run writes the served Ingresses' status and calls Changed after each
// burst of changes, until ctx is done. Call it after Start.
func (c *Controller) Run(ctx context.Context) {
	c.WriteStatus(ctx)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.changes:
			t.Reset(c.opts.Debounce)
		case <-t.C:
			if c.opts.Changed != nil {
				c.opts.Changed()
			}
			c.WriteStatus(ctx)
		}
	}
}

func (c *Controller) snapshot() Snapshot {
	classes, _ := c.classes.List(labels.Everything())
	ings, _ := c.ingresses.List(labels.Everything())
	return Snapshot{Classes: classes, Ingresses: ings, Service: func(ns, name string) *corev1.Service {
		s, err := c.services.Services(ns).Get(name)
		if err != nil {
			return nil
		}
		return s
	}}
}

// Merge returns file (the config file's, validated) with the routes of
// the Ingresses it serves now (file.IngressClass) appended, validated as
// a whole. It logs the routes added and removed since the last merge and
// each new problem, which also becomes a Warning Event on its object.
func (c *Controller) Merge(file *conf.Config) (*conf.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := Translate(file, c.snapshot(), c.prev)
	merged, err := file.WithServices(res.Services)
	if err != nil {
		return nil, fmt.Errorf("ingress routes: %w", err)
	}
	c.prev, c.class = res.Settings, file.IngressClass
	if found := file.IngressClass == "" || slices.ContainsFunc(c.snapshot().Classes, func(ic *networkingv1.IngressClass) bool {
		return ic.Name == file.IngressClass && ic.Spec.Controller == ControllerName
	}); found != c.classFound {
		c.classFound = found
		if !found {
			c.opts.Log.Warn().Str("ingress_class", file.IngressClass).Str("controller", ControllerName).
				Msg("ingress: no IngressClass of this name with Agimo's controller: no Ingress is served")
		}
	}
	routes := make(map[string]bool, len(res.Services))
	for _, s := range res.Services {
		routes[fmt.Sprintf("%s %s -> %s/%s:%d", hostOf(s.Host), RulePath(&s), s.Namespace, s.ServiceName, s.ServicePort)] = true
	}
	for r := range routes {
		if !c.routes[r] {
			c.opts.Log.Info().Str("route", r).Msg("ingress: route added")
		}
	}
	for r := range c.routes {
		if !routes[r] {
			c.opts.Log.Info().Str("route", r).Msg("ingress: route removed")
		}
	}
	c.routes = routes
	problems := make(map[Problem]bool, len(res.Problems))
	for _, p := range res.Problems {
		problems[p] = true
		if c.problems[p] {
			continue // reported already
		}
		c.opts.Log.Warn().Str("kind", p.Kind).Str("object", p.Namespace+"/"+p.Name).Str("reason", p.Reason).Msg(p.Message)
		c.opts.Recorder.Event(ref(p), corev1.EventTypeWarning, p.Reason, p.Message)
	}
	c.problems = problems
	return merged, nil
}

// ref is the object a Problem is about, for its Event.
func ref(p Problem) runtime.Object {
	ref := &corev1.ObjectReference{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
	if p.Kind == "Ingress" {
		ref.APIVersion = "networking.k8s.io/v1"
	} else {
		ref.APIVersion = "v1"
	}
	return ref
}

// Addresses returns what status.loadBalancer.ingress says (Published
// with this controller's options).
func (c *Controller) Addresses() []networkingv1.IngressLoadBalancerIngress {
	return Published(c.opts.PublishAddress, c.opts.PublishService, c.services)
}

// Published returns the addresses an ingress controller publishes (served
// Ingresses' status.loadBalancer.ingress, Gateways' status.addresses):
// address, a comma-separated list of IPs and host names, else the
// LoadBalancer ingress of service ("NAMESPACE/NAME", read from services),
// else its ClusterIP; nil if neither is configured or known.
func Published(address, service string, services listersv1.ServiceLister) []networkingv1.IngressLoadBalancerIngress {
	if address != "" {
		var out []networkingv1.IngressLoadBalancerIngress
		for s := range strings.SplitSeq(address, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if net.ParseIP(s) != nil {
				out = append(out, networkingv1.IngressLoadBalancerIngress{IP: s})
			} else {
				out = append(out, networkingv1.IngressLoadBalancerIngress{Hostname: s})
			}
		}
		return out
	}
	ns, name, ok := strings.Cut(service, "/")
	if !ok {
		return nil
	}
	svc, err := services.Services(ns).Get(name)
	if err != nil {
		return nil
	}
	var out []networkingv1.IngressLoadBalancerIngress
	for _, lb := range svc.Status.LoadBalancer.Ingress {
		out = append(out, networkingv1.IngressLoadBalancerIngress{IP: lb.IP, Hostname: lb.Hostname})
	}
	if len(out) == 0 && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		out = append(out, networkingv1.IngressLoadBalancerIngress{IP: svc.Spec.ClusterIP})
	}
	return out
}

// WriteStatus sets status.loadBalancer of every Ingress served under
// class to Addresses, where it differs, if this replica leads. Failures are logged: the next
// change retries.
func (c *Controller) WriteStatus(ctx context.Context) {
	if c.opts.PublishAddress == "" && c.opts.PublishService == "" || c.opts.Leading != nil && !c.opts.Leading() {
		return
	}
	addrs := c.Addresses()
	snap := c.snapshot()
	for _, ing := range snap.Ingresses {
		if !c.serves(snap, ing) || reflect.DeepEqual(ing.Status.LoadBalancer.Ingress, addrs) ||
			(len(addrs) == 0 && len(ing.Status.LoadBalancer.Ingress) == 0) {
			continue
		}
		up := ing.DeepCopy()
		up.Status.LoadBalancer.Ingress = slices.Clone(addrs)
		_, err := c.opts.Client.NetworkingV1().Ingresses(ing.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{})
		if err != nil {
			c.opts.Log.Warn().Err(err).Str("ingress", ing.Namespace+"/"+ing.Name).Msg("ingress: status not written")
			continue
		}
		c.opts.Log.Info().Str("ingress", ing.Namespace+"/"+ing.Name).Interface("addresses", addrs).Msg("ingress: status written")
	}
}

// serves reports whether ing is of the class of the last merge.
func (c *Controller) serves(snap Snapshot, ing *networkingv1.Ingress) bool {
	c.mu.Lock()
	class := c.class
	c.mu.Unlock()
	return class != "" && Serves(class, snap.Classes, ing)
}
