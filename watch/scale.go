package watch

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/agimo/agimo/conf"
)

// Scaler changes workloads' replicas through their scale subresource.
// Every change is conditional on the resourceVersion it read, so several
// Agimo replicas acting at once change a workload at most once.
type Scaler struct {
	client   kubernetes.Interface
	log      zerolog.Logger
	identity string // this replica, as the holder of the Leases it writes

	mu       sync.Mutex
	recorded map[Workload]time.Time // latest activity known recorded, per workload
}

// NewScaler returns a Scaler using client. The replica's identity, for
// the activity Leases, is its host name: the pod's name in Kubernetes.
func NewScaler(client kubernetes.Interface, log zerolog.Logger) *Scaler {
	id, err := os.Hostname()
	if err != nil || id == "" {
		id = "agimo"
	}
	return &Scaler{client: client, log: log, identity: id, recorded: make(map[Workload]time.Time)}
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
