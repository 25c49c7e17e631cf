package gateway

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"
	gwlistersb "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1beta1"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/ingress"
)

// DefaultDebounce gathers a burst of changes into one reload.
const DefaultDebounce = 100 * time.Millisecond

// crdPoll is how often Run looks again for Gateway API's CRDs when they
// were missing at Start.
var crdPoll = 30 * time.Second

// Options configure a Controller.
type Options struct {
	Client versioned.Interface  // Gateway API
	Kube   kubernetes.Interface // Services, Secrets, Namespaces, Events
	Log    zerolog.Logger
	Ports  Ports
	// PublishService ("NAMESPACE/NAME") and PublishAddress give the
	// Gateways' status.addresses, as for Ingresses (ingress.Options).
	PublishService, PublishAddress string
	// Changed is called, debounced, after any change to the watched
	// objects: the caller then merges (Merge) and reloads.
	Changed func()
	// Leading reports whether this replica writes status; nil: always.
	Leading func() bool
	// Recorder gets the Warning Events; nil: one sending to Kube.
	Recorder record.EventRecorder
	// Debounce defaults to DefaultDebounce.
	Debounce time.Duration
}

// Controller watches Gateway API objects, Services, TLS Secrets (their
// type only) and Namespaces. Create it with New, Start it, then call
// Merge for each reload; Run writes statuses and calls Changed until its
// context ends.
type Controller struct {
	opts       Options
	gwf        gwinformers.SharedInformerFactory
	kf         informers.SharedInformerFactory
	classes    gwlisters.GatewayClassLister
	gateways   gwlisters.GatewayLister
	httpRoutes gwlisters.HTTPRouteLister
	grpcRoutes gwlisters.GRPCRouteLister
	grants     gwlistersb.ReferenceGrantLister
	services   listersv1.ServiceLister
	secrets    listersv1.SecretLister
	namespaces listersv1.NamespaceLister
	changes    chan struct{}
	statusDue  chan struct{}
	stopBcast  func()

	writeMu sync.Mutex // WriteStatus's
	written map[writeKey]written

	mu      sync.Mutex // Merge's state, between reloads
	started bool       // the informers run (the CRDs exist)
	// classFound: the GatewayClass exists with Agimo's controllerName (its
	// absence is logged when it starts).
	classFound bool
	merged     bool // status holds a merge's
	status     Status
	prev       map[types.NamespacedName]ingress.Settings
	routes     map[string]bool
	problem    map[Problem]bool
}

// New makes a controller; nothing runs before Start.
func New(opts Options) *Controller {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	c := &Controller{opts: opts, changes: make(chan struct{}, 1), statusDue: make(chan struct{}, 1), stopBcast: func() {}, classFound: true}
	if c.opts.Recorder == nil {
		b := record.NewBroadcaster()
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: opts.Kube.CoreV1().Events("")})
		c.stopBcast = b.Shutdown
		c.opts.Recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "agimo"})
	}
	c.gwf = gwinformers.NewSharedInformerFactory(opts.Client, 0)
	c.kf = informers.NewSharedInformerFactory(opts.Kube, 0)
	v1, v1b := c.gwf.Gateway().V1(), c.gwf.Gateway().V1beta1()
	c.classes, c.gateways = v1.GatewayClasses().Lister(), v1.Gateways().Lister()
	c.httpRoutes, c.grpcRoutes = v1.HTTPRoutes().Lister(), v1.GRPCRoutes().Lister()
	c.grants = v1b.ReferenceGrants().Lister()
	c.services, c.namespaces = c.kf.Core().V1().Services().Lister(), c.kf.Core().V1().Namespaces().Lister()
	sec := c.kf.Core().V1().Secrets()
	c.secrets = sec.Lister()
	// Only a listener's certificateRefs' existence and type are read here
	// (package certs loads the certificates): keep no key in memory.
	_ = sec.Informer().SetTransform(func(obj any) (any, error) {
		if s, ok := obj.(*corev1.Secret); ok {
			return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion}, Type: s.Type}, nil
		}
		return obj, nil
	})
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.poke() },
		UpdateFunc: func(o, n any) { c.update(o, n) },
		DeleteFunc: func(any) { c.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		v1.GatewayClasses().Informer(), v1.Gateways().Informer(), v1.HTTPRoutes().Informer(), v1.GRPCRoutes().Informer(),
		v1b.ReferenceGrants().Informer(), c.kf.Core().V1().Services().Informer(), c.kf.Core().V1().Namespaces().Informer(),
	} {
		if _, err := inf.AddEventHandler(h); err != nil {
			opts.Log.Error().Err(err).Msg("gateway: add event handler")
		}
	}
	// Of Secrets only TLS ones can be a listener's certificate: the
	// others (service account tokens, app config) change without a reload.
	if _, err := sec.Informer().AddEventHandler(cache.FilteringResourceEventHandler{Handler: h, FilterFunc: func(obj any) bool {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		s, ok := obj.(*corev1.Secret)
		return ok && s.Type == corev1.SecretTypeTLS
	}}); err != nil {
		opts.Log.Error().Err(err).Msg("gateway: add event handler")
	}
	return c
}

// update pokes for a change of spec, labels, annotations, or of a
// Service's status (the publish Service's addresses): the status writes
// of Agimo itself change only status and come back as no-ops.
func (c *Controller) update(o, n any) {
	om, ok1 := o.(metav1.Object)
	nm, ok2 := n.(metav1.Object)
	if ok1 && ok2 && om.GetGeneration() != 0 && om.GetGeneration() == nm.GetGeneration() &&
		same(om.GetLabels(), nm.GetLabels()) && same(om.GetAnnotations(), nm.GetAnnotations()) {
		return // a status write
	}
	c.poke()
}

func (c *Controller) poke() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// Resync asks Run to write every status again, as a new leader must.
func (c *Controller) Resync() {
	select {
	case c.statusDue <- struct{}{}:
	default:
	}
}

// gatewayResources are the CRDs served: without them the informers would
// retry forever.
var gatewayResources = map[string][]string{
	"gateway.networking.k8s.io/v1":      {"gatewayclasses", "gateways", "httproutes", "grpcroutes"},
	"gateway.networking.k8s.io/v1beta1": {"referencegrants"},
}

// missingCRDs returns the Gateway API resources the API server does not
// serve ("" when all are).
func (c *Controller) missingCRDs() string {
	var missing []string
	for gv, want := range gatewayResources {
		list, err := c.opts.Client.Discovery().ServerResourcesForGroupVersion(gv)
		for _, r := range want {
			if err != nil || !slices.ContainsFunc(list.APIResources, func(a metav1.APIResource) bool { return a.Name == r }) {
				missing = append(missing, gv+" "+r)
			}
		}
	}
	slices.Sort(missing)
	return fmt.Sprint(missing)
}

// Start starts the informers and waits for their first sync, or ctx. If
// Gateway API's CRDs are not installed it logs so once and returns nil:
// Agimo serves the rest, and Run starts the informers once they are.
func (c *Controller) Start(ctx context.Context) error {
	if m := c.missingCRDs(); m != "[]" {
		c.opts.Log.Error().Str("missing", m).Msg("gateway: Gateway API CRDs not installed: no Gateway is served until they are")
		return nil
	}
	return c.start(ctx)
}

func (c *Controller) start(ctx context.Context) error {
	c.gwf.Start(ctx.Done())
	c.kf.Start(ctx.Done())
	for _, synced := range []map[any]bool{typed(c.gwf.WaitForCacheSync(ctx.Done())), typed(c.kf.WaitForCacheSync(ctx.Done()))} {
		for typ, ok := range synced {
			if !ok {
				return fmt.Errorf("gateway: %v not synced: %w", typ, context.Cause(ctx))
			}
		}
	}
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	c.opts.Log.Info().Msg("gateway: informer caches synced")
	return nil
}

func typed[K comparable](m map[K]bool) map[any]bool {
	out := make(map[any]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Close stops the informers and the event broadcaster and waits for
// them; the context given to Start and Run must be done.
func (c *Controller) Close() {
	c.gwf.Shutdown()
	c.kf.Shutdown()
	c.stopBcast()
}

// Run calls Changed after each burst of changes and writes status after
// each Merge and on Resync, until ctx is done. Call it after Start.
func (c *Controller) Run(ctx context.Context) {
	var poll <-chan time.Time
	c.mu.Lock()
	if !c.started {
		tk := time.NewTicker(crdPoll)
		defer tk.Stop()
		poll = tk.C
	}
	c.mu.Unlock()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll:
			if c.missingCRDs() != "[]" {
				continue
			}
			poll = nil
			if err := c.start(ctx); err != nil {
				c.opts.Log.Error().Err(err).Msg("gateway: not started")
				return
			}
			c.poke()
		case <-c.changes:
			t.Reset(c.opts.Debounce)
		case <-t.C:
			if c.opts.Changed != nil {
				c.opts.Changed()
			}
		case <-c.statusDue:
			c.WriteStatus(ctx)
		}
	}
}

func (c *Controller) snapshot() Snapshot {
	var s Snapshot
	s.Classes, _ = c.classes.List(labels.Everything())
	s.Gateways, _ = c.gateways.List(labels.Everything())
	s.HTTPRoutes, _ = c.httpRoutes.List(labels.Everything())
	s.GRPCRoutes, _ = c.grpcRoutes.List(labels.Everything())
	s.Grants, _ = c.grants.List(labels.Everything())
	s.Service = func(ns, name string) *corev1.Service {
		v, err := c.services.Services(ns).Get(name)
		if err != nil {
			return nil
		}
		return v
	}
	s.Secret = func(ns, name string) *corev1.Secret {
		v, err := c.secrets.Secrets(ns).Get(name)
		if err != nil {
			return nil
		}
		return v
	}
	s.Namespace = func(name string) *corev1.Namespace {
		v, err := c.namespaces.Get(name)
		if err != nil {
			return nil
		}
		return v
	}
	return s
}

// Merge returns cfg (the config file's with the Ingresses' routes,
// validated) with the routes of the Gateways of cfg.GatewayClass
// appended and their certificates added, validated as a whole. It logs
// the routes added and removed since the last merge and each new
// problem, which also becomes a Warning Event on its object, and has Run
// write the statuses.
func (c *Controller) Merge(cfg *conf.Config) (*conf.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := Translate(cfg, c.snapshot(), c.opts.Ports, c.Addresses(), c.prev)
	base := *cfg
	base.Services = slices.Clone(cfg.Services)
	slices.Sort(res.Displaced)
	for _, i := range slices.Backward(slices.Compact(res.Displaced)) {
		base.Services = slices.Delete(base.Services, i, i+1)
	}
	base.TLSSecrets = append(slices.Clone(cfg.TLSSecrets), res.TLSSecrets...)
	merged, err := base.WithServices(res.Services)
	if err != nil {
		return nil, fmt.Errorf("gateway routes: %w", err)
	}
	c.prev, c.status, c.merged = res.Settings, res.Status, true
	if found := res.Status.Class != nil; c.started && found != c.classFound {
		c.classFound = found
		if !found {
			c.opts.Log.Warn().Str("gateway_class", cfg.GatewayClass).Str("controller", string(ControllerName)).
				Msg("gateway: no GatewayClass of this name with Agimo's controllerName: no Gateway is served")
		}
	}
	routes := make(map[string]bool, len(res.Services))
	for _, s := range res.Services {
		to := fmt.Sprintf("%s/%s:%d", s.Namespace, s.ServiceName, s.ServicePort)
		switch {
		case s.Fixed != 0:
			to = fmt.Sprint(s.Fixed)
		case s.Filters != nil && s.Filters.Redirect != nil:
			to = "redirect"
		}
		routes[fmt.Sprintf("%s %s %s-> %s (%s)", hostOf(s.Host), rulePath(&s), s.MatchKey(), to, s.Source)] = true
	}
	for r := range routes {
		if !c.routes[r] {
			c.opts.Log.Info().Str("route", r).Msg("gateway: route added")
		}
	}
	for r := range c.routes {
		if !routes[r] {
			c.opts.Log.Info().Str("route", r).Msg("gateway: route removed")
		}
	}
	c.routes = routes
	problems := make(map[Problem]bool, len(res.Problems))
	for _, p := range res.Problems {
		problems[p] = true
		if !c.problem[p] {
			c.opts.Log.Warn().Str("kind", p.Kind).Str("object", p.Namespace+"/"+p.Name).Str("reason", p.Reason).Msg(p.Message)
			c.opts.Recorder.Event(ref(p), corev1.EventTypeWarning, p.Reason, p.Message)
		}
	}
	c.problem = problems
	c.Resync()
	return merged, nil
}

// ref is the object a Problem is about, for its Event.
func ref(p Problem) runtime.Object {
	r := &corev1.ObjectReference{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name, APIVersion: "v1"}
	if p.Kind == "Ingress" {
		r.APIVersion = "networking.k8s.io/v1"
	}
	return r
}
