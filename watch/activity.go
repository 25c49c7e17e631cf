package watch

import (
	"context"
	"fmt"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Activity for idle_after (issue 7) is shared by all Agimo replicas in a
// coordination.k8s.io/v1 Lease per workload, in the workload's namespace:
// spec.renewTime is the last activity recorded, spec.holderIdentity the
// replica that recorded it. A Lease, not an annotation on the workload,
// so that recording activity neither changes the workload (GitOps tools
// would see drift) nor bumps its resourceVersion (issue 10, item 14).

// ScaledToZeroAnnotation is set on the activity Lease by the replica that
// scales the workload to zero, just before it does: the write, made
// conditional on the Lease it read, is what makes activity recorded
// meanwhile by another replica cancel the scale-down.
const ScaledToZeroAnnotation = "agimo.dev/scaled-to-zero"

// LeaseName is the name of w's activity Lease.
func LeaseName(w Workload) string { return "agimo-" + w.Kind + "-" + w.Name }

// ActivityGap is how much later than the recorded activity a replica's
// activity must be before it is written: with idle_after/3, the Lease is
// written at most about three times per idle_after per workload, however
// many replicas and requests; not at every check of every replica.
func ActivityGap(idle time.Duration) time.Duration { return idle / 3 }

// RecordActivity records that w had activity at at, if that is at least
// ActivityGap(idle) later than the activity recorded: never backwards (a
// replica whose clock is behind writes nothing), and at most once per gap
// across replicas, as each write is conditional on the Lease read.
func (s *Scaler) RecordActivity(ctx context.Context, w Workload, at time.Time, idle time.Duration) error {
	gap := ActivityGap(idle)
	// What this replica knows was recorded can only be older than what
	// the Lease holds: if even that is recent enough, skip the read too.
	if known, ok := s.knownActivity(w); ok && at.Sub(known) < gap {
		return nil
	}
	for range 3 {
		l, err := s.getLease(ctx, w)
		if err != nil {
			return fmt.Errorf("record activity on %s: %w", w, err)
		}
		if l == nil {
			err := s.createLease(ctx, w, at)
			if apierrors.IsAlreadyExists(err) {
				continue // another replica created it meanwhile
			}
			if err != nil {
				return fmt.Errorf("record activity on %s: %w", w, err)
			}
			return nil
		}
		recorded := renewTime(l)
		s.noteActivity(w, recorded)
		if at.Sub(recorded) < gap {
			return nil
		}
		l.Spec.RenewTime = &metav1.MicroTime{Time: at}
		l.Spec.HolderIdentity = &s.identity
		_, err = s.client.CoordinationV1().Leases(w.Namespace).Update(ctx, l, metav1.UpdateOptions{}) // conditional on l.ResourceVersion
		if apierrors.IsConflict(err) {
			continue // another replica wrote: read again and decide again
		}
		if err != nil {
			return fmt.Errorf("record activity on %s: %w", w, leaseForbidden(err, w))
		}
		s.noteActivity(w, at)
		return nil
	}
	return nil
}

// ScaleDownIfIdle scales w to zero if it has replicas and the activity
// recorded in its Lease is older than idle plus ActivityGap(idle) (the
// most by which a replica's activity may be newer than the one recorded),
// and reports whether it did. A workload without a Lease gets one, with
// now as its activity: it gets a whole idle_after from now.
func (s *Scaler) ScaleDownIfIdle(ctx context.Context, w Workload, idle time.Duration, now time.Time) (bool, error) {
	sc, err := s.getScale(ctx, w)
	if err != nil {
		return false, fmt.Errorf("get scale of %s: %w", w, explainForbidden(err, w, "get and update", "/scale"))
	}
	if sc.Spec.Replicas == 0 {
		return false, nil
	}
	l, err := s.getLease(ctx, w)
	if err != nil {
		return false, fmt.Errorf("idle check of %s: %w", w, err)
	}
	if l == nil {
		if err := s.createLease(ctx, w, now); err != nil && !apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("record activity on %s: %w", w, err)
		}
		return false, nil
	}
	last := renewTime(l)
	s.noteActivity(w, last)
	if now.Sub(last) < idle+ActivityGap(idle) {
		return false, nil
	}
	if l.Annotations == nil {
		l.Annotations = make(map[string]string)
	}
	l.Annotations[ScaledToZeroAnnotation] = now.UTC().Format(time.RFC3339Nano)
	if _, err := s.client.CoordinationV1().Leases(w.Namespace).Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return false, nil // activity recorded meanwhile: decide again next time
		}
		return false, fmt.Errorf("idle check of %s: %w", w, leaseForbidden(err, w))
	}
	down := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: w.Name, Namespace: w.Namespace, ResourceVersion: sc.ResourceVersion},
		Spec:       autoscalingv1.ScaleSpec{Replicas: 0},
	}
	if err := s.updateScale(ctx, w, down); err != nil {
		if apierrors.IsConflict(err) {
			return false, nil // scaled by someone else meanwhile: decide again next time
		}
		return false, fmt.Errorf("scale %s to 0: %w", w, explainForbidden(err, w, "get and update", "/scale"))
	}
	s.log.Info().Str("workload", w.String()).Time("last_activity", last).Msg("scaled idle workload to zero")
	return true, nil
}

// getLease returns w's activity Lease, or nil if there is none.
func (s *Scaler) getLease(ctx context.Context, w Workload) (*coordinationv1.Lease, error) {
	l, err := s.client.CoordinationV1().Leases(w.Namespace).Get(ctx, LeaseName(w), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, leaseForbidden(err, w)
	}
	return l, nil
}

func (s *Scaler) createLease(ctx context.Context, w Workload, at time.Time) error {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: LeaseName(w), Namespace: w.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "agimo"},
		},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &s.identity, RenewTime: &metav1.MicroTime{Time: at}},
	}
	if _, err := s.client.CoordinationV1().Leases(w.Namespace).Create(ctx, l, metav1.CreateOptions{}); err != nil {
		return leaseForbidden(err, w)
	}
	s.noteActivity(w, at)
	return nil
}

func renewTime(l *coordinationv1.Lease) time.Time {
	if l.Spec.RenewTime == nil {
		return time.Time{}
	}
	return l.Spec.RenewTime.Time
}

func (s *Scaler) knownActivity(w Workload) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.recorded[w]
	return t, ok
}

// noteActivity remembers that activity at t is recorded for w, keeping
// the latest.
func (s *Scaler) noteActivity(w Workload, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.After(s.recorded[w]) {
		s.recorded[w] = t
	}
}

// leaseForbidden names the RBAC rule a Forbidden on the activity Lease
// calls for.
func leaseForbidden(err error, w Workload) error {
	if !apierrors.IsForbidden(err) {
		return err
	}
	return fmt.Errorf("forbidden by RBAC: grant get, create and update on leases (apiGroup \"coordination.k8s.io\") in namespace %s: %w", w.Namespace, err)
}
