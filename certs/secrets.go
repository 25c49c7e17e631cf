package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/agimo/agimo/watch"
)

// secretWatch is the informer of one Secret. It lists and watches with
// the field selector metadata.name=NAME: the API server then authorizes
// the list and the watch against that name (RequestInfo.Name is taken
// from an exact metadata.name field selector), so RBAC can grant get,
// list and watch by resourceNames instead of every Secret of the
// namespace — which would let Agimo read them all.
type secretWatch struct {
	src    source
	lw     *watch.ReportingListWatch
	cancel context.CancelFunc
	synced chan struct{} // closed once the first list was handled
}

func (w *secretWatch) stop() { w.cancel() }

// newSecretWatch creates and starts src's informer. s.mu is held and
// s.ctx set.
func (s *Store) newSecretWatch(src source) *secretWatch {
	ctx, cancel := context.WithCancel(s.ctx)
	w := &secretWatch{src: src, cancel: cancel, synced: make(chan struct{})}
	secrets := s.client.CoreV1().Secrets(src.ns)
	sel := fields.OneTermEqualSelector("metadata.name", src.name).String()
	w.lw = watch.NewReportingListWatch(s.client, s.log, s.set, "secrets", "", src.ns,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return secrets.List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
			o.FieldSelector = sel
			return secrets.Watch(ctx, o)
		})
	inf := cache.NewSharedIndexInformer(w.lw, &corev1.Secret{}, 0, cache.Indexers{})
	// Errors from these setters only mean the informer already started.
	_ = inf.SetTransform(stripSecret)
	_ = inf.SetWatchErrorHandler(w.lw.ErrorHandler)
	reg, _ := inf.AddEventHandler(cache.FilteringResourceEventHandler{
		// The API server filters by name already; this guards against a
		// client that does not (client-go's fake clientset).
		FilterFunc: func(obj any) bool {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			sec, ok := obj.(*corev1.Secret)
			return ok && sec.Name == src.name && sec.Namespace == src.ns
		},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				c, err := parseSecret(obj.(*corev1.Secret))
				s.update(src, w, c, err, "loaded")
			},
			UpdateFunc: func(old, obj any) {
				o, n := old.(*corev1.Secret), obj.(*corev1.Secret)
				if n.ResourceVersion != "" && o.ResourceVersion == n.ResourceVersion {
					return // a relist, not a change
				}
				c, err := parseSecret(n)
				s.update(src, w, c, err, "rotated")
			},
			DeleteFunc: func(any) {
				s.update(src, w, nil, fmt.Errorf("Secret %s/%s was deleted", src.ns, src.name), "")
			},
		},
	})
	s.wg.Go(func() { inf.RunWithContext(ctx) })
	s.wg.Go(func() {
		defer close(w.synced)
		if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			return
		}
		// Listed, and the handler has seen the list: a Secret it did not
		// get does not exist (yet). Its creation will be an Add event.
		if _, exists, _ := inf.GetStore().GetByKey(src.ns + "/" + src.name); !exists {
			s.update(src, w, nil, fmt.Errorf("Secret %s/%s not found", src.ns, src.name), "")
		}
	})
	return w
}

// waitSynced waits until every informer of pend has handled its first
// list, or ctx ends.
func (s *Store) waitSynced(ctx context.Context, pend []*secretWatch) error {
	for _, w := range pend {
		select {
		case <-w.synced:
		case <-ctx.Done():
			var missing []string
			for _, w := range pend {
				select {
				case <-w.synced:
					continue
				default:
				}
				m := w.src.id()
				if err := w.lw.LastError(); err != nil {
					m += " (last error: " + err.Error() + ")"
				}
				missing = append(missing, m)
			}
			return fmt.Errorf("certs: TLS Secrets not synced: %s: %w", strings.Join(missing, "; "), context.Cause(ctx))
		}
	}
	if s.ctx.Err() != nil {
		// Stop ran meanwhile: the informers ended, synced or not.
		return errors.New("certs: stopped while starting")
	}
	return nil
}

// parseSecret returns a kubernetes.io/tls Secret's certificate.
func parseSecret(sec *corev1.Secret) (*tls.Certificate, error) {
	if sec.Type != corev1.SecretTypeTLS {
		return nil, fmt.Errorf("Secret %s/%s is of type %q, want %q", sec.Namespace, sec.Name, sec.Type, corev1.SecretTypeTLS)
	}
	crt, key := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	var errs []error
	if len(crt) == 0 {
		errs = append(errs, fmt.Errorf("no %s", corev1.TLSCertKey))
	}
	if len(key) == 0 {
		errs = append(errs, fmt.Errorf("no %s", corev1.TLSPrivateKeyKey))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("Secret %s/%s: %w", sec.Namespace, sec.Name, errors.Join(errs...))
	}
	c, err := parsePair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	return c, nil
}

// stripSecret keeps only what parseSecret reads: the informer's cache
// then holds no other data of the Secret (a ca.crt, annotations,
// managedFields).
func stripSecret(obj any) (any, error) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	out := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: sec.Name, Namespace: sec.Namespace, ResourceVersion: sec.ResourceVersion, UID: sec.UID},
		Type:       sec.Type,
		Data:       make(map[string][]byte, 2),
	}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
		if v, ok := sec.Data[k]; ok {
			out.Data[k] = v
		}
	}
	return out, nil
}
