package watch

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// serviceIndex indexes EndpointSlices by "namespace/service-name".
const serviceIndex = "service"

// Watcher keeps the readiness of the configured services up to date from
// one informer factory per configured namespace, each scoped to the
// configured Services, so memory does not grow with the cluster (issue 2).
type Watcher struct {
	client kubernetes.Interface
	log    zerolog.Logger

	// mu guards services, byName and ns, and serialises recompute: the
	// Service and EndpointSlice informers deliver events on different
	// goroutines, and a State must be built from one consistent read of
	// both caches.
	mu       sync.Mutex
	services map[Key]*Service
	byName   map[string][]*Service // "namespace/service" → its configured ports
	ns       map[string]*nsWatch   // namespace → its informers

	// syncWarn is how often a first sync still waited for is logged.
	syncWarn time.Duration

	synced    atomic.Bool
	lastEvent atomic.Int64 // unix nanoseconds of the last informer event
	errSet    *metrics.Set

	// handled, if set (by tests, before Start), is called after each
	// informer event has been handled: the signal that it had its effect.
	handled func(obj any)
}

// nsWatch is the informers of one namespace, for a set of Service names.
type nsWatch struct {
	names    []string // sorted
	factory  informers.SharedInformerFactory
	svcIdx   cache.Indexer
	sliceIdx cache.Indexer
	stop     chan struct{}
}

// New returns a Watcher for keys. set receives the watcher's own metrics
// (event age, watch errors); it may be nil.
func New(client kubernetes.Interface, keys []Key, log zerolog.Logger, set *metrics.Set) *Watcher {
	w := &Watcher{
		client:   client,
		log:      log,
		services: make(map[Key]*Service),
		byName:   make(map[string][]*Service),
		ns:       make(map[string]*nsWatch),
		errSet:   set,
		syncWarn: 10 * time.Second,
	}
	w.addKeys(keys)
	if set != nil {
		set.NewGauge("agimo_watch_last_event_age_seconds", func() float64 {
			t := w.lastEvent.Load()
			if t == 0 {
				return -1
			}
			return time.Since(time.Unix(0, t)).Seconds()
		})
		set.NewGauge("agimo_watch_synced", func() float64 {
			if w.synced.Load() {
				return 1
			}
			return 0
		})
	}
	return w
}

// addKeys adds Services for keys not yet known. w.mu must be held, or w
// not yet shared.
func (w *Watcher) addKeys(keys []Key) {
	for _, k := range keys {
		if _, ok := w.services[k]; ok {
			continue
		}
		s := newService(k)
		w.services[k] = s
		n := k.Namespace + "/" + k.Service
		w.byName[n] = append(w.byName[n], s)
	}
}

// waitSynced waits for syncs, warning every syncWarn while it waits: an
// API server that accepts connections but never answers produces no
// error for the informers to log, and would leave Agimo silent and
// unready (issue 6).
func (w *Watcher) waitSynced(ctx context.Context, namespaces []string, syncs []cache.InformerSynced) bool {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		start := time.Now()
		t := time.NewTicker(w.syncWarn)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				w.log.Warn().Strs("namespaces", namespaces).Dur("waited", time.Since(start).Round(time.Second)).
					Msg("Kubernetes API server has not answered the first list yet (unreachable, hanging or forbidden: see the errors above); still waiting")
			}
		}
	})
	ok := cache.WaitForCacheSync(ctx.Done(), syncs...)
	close(done)
	wg.Wait()
	return ok
}

// Service returns the live readiness of k, or nil if k is not watched.
func (w *Watcher) Service(k Key) *Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.services[k]
}

// Synced reports whether every informer has completed its first list.
func (w *Watcher) Synced() bool { return w.synced.Load() }

// Start starts the informers and blocks until their caches have synced or
// ctx is done. The informers run until Close.
func (w *Watcher) Start(ctx context.Context) error {
	w.mu.Lock()
	keys := slices.Collect(maps.Keys(w.services))
	w.mu.Unlock()
	if err := w.Update(ctx, keys); err != nil {
		return err
	}
	w.synced.Store(true)
	w.mu.Lock()
	n, nns := len(w.services), len(w.ns)
	w.mu.Unlock()
	w.log.Info().Int("services", n).Int("namespaces", nns).Msg("informer caches synced")
	return nil
}

// Update makes the watcher follow keys (a reloaded config, issue 7): it
// starts informers for namespaces and Services that are new, waits for
// them to sync, then stops those no longer needed. Readiness of keys that
// stay is never interrupted: their Service objects, and so the requests
// parked on them, carry over. Keys dropped keep their last State.
func (w *Watcher) Update(ctx context.Context, keys []Key) error {
	want := make(map[string][]string) // namespace → service names
	for _, k := range keys {
		if !slices.Contains(want[k.Namespace], k.Service) {
			want[k.Namespace] = append(want[k.Namespace], k.Service)
		}
	}
	w.mu.Lock()
	w.addKeys(keys)
	fresh := make(map[string]*nsWatch)
	for ns, names := range want {
		slices.Sort(names)
		if cur := w.ns[ns]; cur == nil || !slices.Equal(cur.names, names) {
			fresh[ns] = &nsWatch{names: names}
		}
	}
	w.mu.Unlock()

	var pend []pendingSync
	for ns, nw := range fresh {
		p, err := w.newNSWatch(ns, nw)
		if err != nil {
			stopAll(fresh)
			return err
		}
		pend = append(pend, p...)
	}
	syncs := make([]cache.InformerSynced, len(pend))
	for i, p := range pend {
		syncs[i] = p.synced
	}
	if !w.waitSynced(ctx, slices.Collect(maps.Keys(fresh)), syncs) {
		err := fmt.Errorf("wait for informer caches: %s: %w", unsynced(pend), context.Cause(ctx))
		stopAll(fresh) // stops and waits for the half-started informers
		return err
	}

	w.mu.Lock()
	var old []*nsWatch
	for ns, nw := range fresh {
		if cur := w.ns[ns]; cur != nil {
			old = append(old, cur)
		}
		w.ns[ns] = nw
	}
	for ns, cur := range w.ns {
		if _, ok := want[ns]; !ok {
			old = append(old, cur)
			delete(w.ns, ns)
		}
	}
	w.mu.Unlock()
	// Events delivered during the sync already computed every service that
	// has objects; services with none stay not ready, which is right.
	// Recompute all the same, now that the new caches are in place.
	for ns, nw := range fresh {
		for _, name := range nw.names {
			w.recompute(ns, name)
		}
	}
	for _, nw := range old {
		close(nw.stop)
		nw.factory.Shutdown()
	}
	return nil
}

func stopAll(ws map[string]*nsWatch) {
	for _, nw := range ws {
		if nw.stop != nil {
			close(nw.stop)
			nw.factory.Shutdown()
		}
	}
}

// Close stops the informers and waits for their goroutines.
func (w *Watcher) Close() {
	w.mu.Lock()
	all := w.ns
	w.ns = make(map[string]*nsWatch)
	w.mu.Unlock()
	stopAll(all)
}

func (w *Watcher) onEvent(obj any) {
	w.lastEvent.Store(time.Now().UnixNano())
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		w.recompute(o.Namespace, o.Labels[discoveryv1.LabelServiceName])
	case *corev1.Service:
		w.recompute(o.Namespace, o.Name)
	}
	if w.handled != nil {
		w.handled(obj)
	}
}

// recompute rebuilds the State of every configured port of one Service
// from the informer caches.
func (w *Watcher) recompute(ns, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	svcs := w.byName[ns+"/"+name]
	nw := w.ns[ns]
	if len(svcs) == 0 || nw == nil || !slices.Contains(nw.names, name) {
		return // not (or no longer, or not yet) watched
	}
	var svc *corev1.Service
	if obj, ok, _ := nw.svcIdx.GetByKey(ns + "/" + name); ok {
		svc = obj.(*corev1.Service)
	}
	objs, _ := nw.sliceIdx.ByIndex(serviceIndex, ns+"/"+name)
	eps := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		eps = append(eps, o.(*discoveryv1.EndpointSlice))
	}
	for _, s := range svcs {
		var addrs []string
		var appProto string
		reason := ""
		if svc == nil {
			reason = "service not found"
		} else if pn, ok := portName(svc, s.key.Port); !ok {
			reason = fmt.Sprintf("service has no TCP port %d", s.key.Port)
		} else {
			addrs, appProto = readyAddrs(eps, pn)
		}
		ready := len(addrs) > 0
		if s.set(ready, addrs, appProto) {
			ev := w.log.Info()
			if reason != "" {
				ev = w.log.Warn().Str("reason", reason)
			}
			ev.Str("namespace", ns).Str("service", name).Int32("port", s.key.Port).
				Bool("ready", ready).Int("endpoints", len(addrs)).Str("appProtocol", appProto).Msg("service readiness changed")
		}
	}
}

func sliceServiceIndex(obj any) ([]string, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	return []string{es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]}, nil
}

// stripSlice drops what readiness does not read, to keep the cache small.
func stripSlice(obj any) (any, error) {
	if es, ok := obj.(*discoveryv1.EndpointSlice); ok {
		es.ManagedFields = nil
		es.Annotations = nil
		for i := range es.Endpoints {
			es.Endpoints[i].TargetRef = nil
			es.Endpoints[i].Hints = nil
			es.Endpoints[i].DeprecatedTopology = nil
		}
	}
	return obj, nil
}

// stripService keeps only identity and ports.
func stripService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, ResourceVersion: svc.ResourceVersion, UID: svc.UID},
		Spec:       corev1.ServiceSpec{Ports: svc.Spec.Ports},
	}, nil
}
