package watch

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/agimo/agimo/conf"
)

// LastActivityAnnotation is where Agimo replicas record, on a workload,
// when one of them last saw a request for it, so that idle scale-down
// (idle_after) is decided across all replicas (issue 7).
const LastActivityAnnotation = "agimo.dev/last-activity"

// Scaler changes workloads' replicas through their scale subresource.
// Every change is conditional on the resourceVersion it read, so several
// Agimo replicas acting at once change a workload at most once.
type Scaler struct {
	client kubernetes.Interface
	log    zerolog.Logger
}

// NewScaler returns a Scaler using client.
func NewScaler(client kubernetes.Interface, log zerolog.Logger) *Scaler {
	return &Scaler{client: client, log: log}
}

// Workload names a Deployment or StatefulSet.
type Workload struct {
	Kind      string // conf.KindDeployment or conf.KindStatefulSet
	Namespace string
	Name      string
}

func (w Workload) String() string { return w.Kind + "/" + w.Namespace + "/" + w.Name }

func (s *Scaler) getScale(ctx context.Context, w Workload) (*autoscalingv1.Scale, error) {
	if w.Kind == conf.KindStatefulSet {
		return s.client.AppsV1().StatefulSets(w.Namespace).GetScale(ctx, w.Name, metav1.GetOptions{})
	}
	return s.client.AppsV1().Deployments(w.Namespace).GetScale(ctx, w.Name, metav1.GetOptions{})
}

func (s *Scaler) updateScale(ctx context.Context, w Workload, sc *autoscalingv1.Scale) error {
	var err error
	if w.Kind == conf.KindStatefulSet {
		_, err = s.client.AppsV1().StatefulSets(w.Namespace).UpdateScale(ctx, w.Name, sc, metav1.UpdateOptions{})
	} else {
		_, err = s.client.AppsV1().Deployments(w.Namespace).UpdateScale(ctx, w.Name, sc, metav1.UpdateOptions{})
	}
	return err
}

// WakeUp raises w to replicas if it is at zero, and reports whether this
// call did. A workload already above zero (another Agimo replica, KEDA or
// a person got there first) is left alone.
func (s *Scaler) WakeUp(ctx context.Context, w Workload, replicas int32) (bool, error) {
	for attempt := 0; attempt < 3; attempt++ {
		sc, err := s.getScale(ctx, w)
		if err != nil {
			return false, fmt.Errorf("get scale of %s: %w", w, explainForbidden(err, w, "get and update", "/scale"))
		}
		if sc.Spec.Replicas > 0 {
			return false, nil
		}
		sc.Spec.Replicas = replicas
		err = s.updateScale(ctx, w, sc) // conditional on sc.ResourceVersion
		if err == nil {
			s.log.Info().Str("workload", w.String()).Int32("replicas", replicas).Msg("woke workload from zero")
			return true, nil
		}
		if !apierrors.IsConflict(err) {
			return false, fmt.Errorf("scale %s to %d: %w", w, replicas, explainForbidden(err, w, "get and update", "/scale"))
		}
	}
	return false, nil
}

// RecordActivity stamps w with the time of the last request seen, if it
// is later than the one recorded.
func (s *Scaler) RecordActivity(ctx context.Context, w Workload, at time.Time) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, LastActivityAnnotation, at.UTC().Format(time.RFC3339Nano))
	var err error
	if w.Kind == conf.KindStatefulSet {
		_, err = s.client.AppsV1().StatefulSets(w.Namespace).Patch(ctx, w.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	} else {
		_, err = s.client.AppsV1().Deployments(w.Namespace).Patch(ctx, w.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	}
	if err != nil {
		return fmt.Errorf("record activity on %s: %w", w, explainForbidden(err, w, "get and patch", ""))
	}
	return nil
}

// explainForbidden names the RBAC rule a Forbidden error calls for, as
// the watch does for its own (issue 2), so the log says what to grant.
func explainForbidden(err error, w Workload, verbs, sub string) error {
	if !apierrors.IsForbidden(err) {
		return err
	}
	resource := "deployments"
	if w.Kind == conf.KindStatefulSet {
		resource = "statefulsets"
	}
	return fmt.Errorf("forbidden by RBAC: grant %s on %s%s (apiGroup \"apps\") in namespace %s: %w", verbs, resource, sub, w.Namespace, err)
}

// ScaleDownIfIdle scales w to zero if it has replicas and its recorded
// last activity is older than idle, and reports whether it did. The scale
// change is conditional on the resourceVersion read with the annotation,
// so activity recorded meanwhile by another replica cancels it.
func (s *Scaler) ScaleDownIfIdle(ctx context.Context, w Workload, idle time.Duration, now time.Time) (bool, error) {
	var (
		meta     metav1.ObjectMeta
		replicas int32
	)
	if w.Kind == conf.KindStatefulSet {
		o, err := s.client.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get %s: %w", w, err)
		}
		meta, replicas = o.ObjectMeta, ptrOr(o.Spec.Replicas, 1)
	} else {
		o, err := s.client.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get %s: %w", w, err)
		}
		meta, replicas = o.ObjectMeta, ptrOr(o.Spec.Replicas, 1)
	}
	if replicas == 0 {
		return false, nil
	}
	last, err := time.Parse(time.RFC3339Nano, meta.Annotations[LastActivityAnnotation])
	if err != nil {
		// Never recorded (a workload just given idle_after, or Agimo just
		// deployed): start counting now rather than from its creation, so
		// it gets a whole idle_after before it is scaled down.
		return false, s.RecordActivity(ctx, w, now)
	}
	if now.Sub(last) < idle {
		return false, nil
	}
	sc := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: w.Name, Namespace: w.Namespace, ResourceVersion: meta.ResourceVersion},
		Spec:       autoscalingv1.ScaleSpec{Replicas: 0},
	}
	if err := s.updateScale(ctx, w, sc); err != nil {
		if apierrors.IsConflict(err) {
			return false, nil // changed meanwhile: decide again next time
		}
		return false, fmt.Errorf("scale %s to 0: %w", w, err)
	}
	s.log.Info().Str("workload", w.String()).Time("last_activity", last).Msg("scaled idle workload to zero")
	return true, nil
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}
