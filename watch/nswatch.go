package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// newNSWatch creates and starts the informers of one namespace.
func (w *Watcher) newNSWatch(ns string, nw *nsWatch) ([]pendingSync, error) {
	svcs := nw.names
	// EndpointSlices carry their Service's name as a label, so the API
	// server filters them for us.
	sel := discoveryv1.LabelServiceName + " in (" + strings.Join(svcs, ",") + ")"
	f := informers.NewSharedInformerFactoryWithOptions(w.client, 0, informers.WithNamespace(ns))
	// Both informers are built here rather than by the factory so that
	// their list and watch calls go through a reportingLW: failures are
	// counted and logged as they happen, and an unreachable API server is
	// retried quickly (issue 10, item 12).
	sliceRep := w.newErrReporter("endpointslices", "discovery.k8s.io", ns)
	esClient := w.client.DiscoveryV1().EndpointSlices(ns)
	sliceInf := f.InformerFor(&discoveryv1.EndpointSlice{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return cache.NewSharedIndexInformer(newReportingLW(c, sliceRep,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.LabelSelector = sel
				return esClient.List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
				o.LabelSelector = sel
				return esClient.Watch(ctx, o)
			}), &discoveryv1.EndpointSlice{}, resync, cache.Indexers{})
	})
	// Services have no label naming themselves: a single configured
	// Service is watched by name; several share one watch of the
	// namespace, stripped to name and ports so each costs ~100 bytes.
	svcRep := w.newErrReporter("services", "", ns)
	services := w.client.CoreV1().Services(ns)
	tweak := func(o *metav1.ListOptions) {
		if len(svcs) == 1 {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", svcs[0]).String()
		}
	}
	svcInf := f.InformerFor(&corev1.Service{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return cache.NewSharedIndexInformer(newReportingLW(c, svcRep,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				tweak(&o)
				return services.List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
				tweak(&o)
				return services.Watch(ctx, o)
			}), &corev1.Service{}, resync, cache.Indexers{})
	})
	if err := errors.Join(
		sliceInf.AddIndexers(cache.Indexers{serviceIndex: sliceServiceIndex}),
		sliceInf.SetTransform(stripSlice),
		svcInf.SetTransform(stripService),
		sliceInf.SetWatchErrorHandler(sliceRep.handler),
		svcInf.SetWatchErrorHandler(svcRep.handler),
	); err != nil {
		return nil, fmt.Errorf("set up informers for namespace %s: %w", ns, err)
	}
	syncs := []pendingSync{{ns, "endpointslices", sliceInf.HasSynced, sliceRep}, {ns, "services", svcInf.HasSynced, svcRep}}
	for _, inf := range []cache.SharedIndexInformer{sliceInf, svcInf} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    w.onEvent,
			UpdateFunc: func(_, obj any) { w.onEvent(obj) },
			DeleteFunc: w.onEvent,
		}); err != nil {
			return nil, fmt.Errorf("add event handler in namespace %s: %w", ns, err)
		}
	}
	nw.factory, nw.sliceIdx, nw.svcIdx = f, sliceInf.GetIndexer(), svcInf.GetIndexer()
	// The informers stop when nw.stop is closed: at Close, or when an
	// Update replaces them; factory.Shutdown then waits for them.
	nw.stop = make(chan struct{})
	f.Start(nw.stop)
	return syncs, nil
}

// pendingSync is one informer waited for by Update.
type pendingSync struct {
	ns, resource string
	synced       cache.InformerSynced
	rep          *errReporter
}

// unsynced names the informers of pend not synced yet, each with the
// last error its list or watch met, so that a rejected reload says what
// to fix (issue 10, item 13).
func unsynced(pend []pendingSync) string {
	var out []string
	for _, p := range pend {
		if p.synced() {
			continue
		}
		s := p.resource + " in namespace " + p.ns + " not synced"
		if err := p.rep.lastErr(); err != nil {
			s += " (last error: " + err.Error() + ")"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}
