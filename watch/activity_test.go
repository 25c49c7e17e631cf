package watch

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/agimo/agimo/conf"
)

var (
	webDeploy = Workload{Kind: conf.KindDeployment, Namespace: "apps", Name: "web"}
	t0        = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
)

const idle = 9 * time.Minute // ActivityGap: 3 minutes

func activityLease(at time.Time) *coordinationv1.Lease {
	holder := "other-replica"
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: LeaseName(webDeploy), ResourceVersion: "3"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &metav1.MicroTime{Time: at}},
	}
}

// leaseWrites returns the Leases created or updated through cs.
func leaseWrites(cs *fake.Clientset) []*coordinationv1.Lease {
	var out []*coordinationv1.Lease
	for _, a := range cs.Actions() {
		if a.GetResource().Resource != "leases" {
			continue
		}
		switch a := a.(type) {
		case k8stesting.CreateAction:
			out = append(out, a.GetObject().(*coordinationv1.Lease))
		case k8stesting.UpdateAction:
			out = append(out, a.GetObject().(*coordinationv1.Lease))
		}
	}
	return out
}

// Activity is written only when it is at least ActivityGap later than
// the one recorded, never backwards, and into a Lease created on first
// need (issue 10, item 14).
func TestRecordActivity(t *testing.T) {
	for _, tc := range []struct {
		name      string
		recorded  *time.Time // nil: no Lease yet
		at        time.Time
		wantWrite bool
	}{
		{"no-lease-creates-one", nil, t0, true},
		{"recent-no-write", ptr(t0), t0.Add(ActivityGap(idle) - time.Second), false},
		{"older-than-gap-written", ptr(t0), t0.Add(ActivityGap(idle)), true},
		{"slow-clock-never-backwards", ptr(t0), t0.Add(-time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			if tc.recorded != nil {
				cs = fake.NewClientset(activityLease(*tc.recorded))
			}
			s := NewScaler(cs, zerolog.Nop())
			if err := s.RecordActivity(context.Background(), webDeploy, tc.at, idle); err != nil {
				t.Fatal(err)
			}
			writes := leaseWrites(cs)
			if got := len(writes) > 0; got != tc.wantWrite {
				t.Fatalf("wrote = %v (%d writes); want %v", got, len(writes), tc.wantWrite)
			}
			l, err := cs.CoordinationV1().Leases("apps").Get(context.Background(), LeaseName(webDeploy), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := tc.at
			if !tc.wantWrite {
				want = *tc.recorded
			}
			if !l.Spec.RenewTime.Time.Equal(want) {
				t.Errorf("renewTime = %v; want %v", l.Spec.RenewTime.Time, want)
			}
			if tc.wantWrite && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != s.identity) {
				t.Errorf("holderIdentity = %v; want %q", l.Spec.HolderIdentity, s.identity)
			}
		})
	}
}

// Two busy replicas, one with its clock 40 s behind, checking every 5 s
// for an hour: the Lease is written at most once per ActivityGap in all,
// and its renewTime never moves backwards.
func TestRecordActivityIsQuiet(t *testing.T) {
	cs := fake.NewClientset()
	a, b := NewScaler(cs, zerolog.Nop()), NewScaler(cs, zerolog.Nop())
	a.identity, b.identity = "a", "b"
	ctx := context.Background()
	var last time.Time
	for now := t0; now.Before(t0.Add(time.Hour)); now = now.Add(5 * time.Second) {
		if err := a.RecordActivity(ctx, webDeploy, now, idle); err != nil {
			t.Fatal(err)
		}
		if err := b.RecordActivity(ctx, webDeploy, now.Add(-40*time.Second), idle); err != nil {
			t.Fatal(err)
		}
		l, err := cs.CoordinationV1().Leases("apps").Get(ctx, LeaseName(webDeploy), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rt := l.Spec.RenewTime.Time; rt.Before(last) {
			t.Fatalf("at %v: renewTime moved backwards from %v to %v", now, last, rt)
		} else {
			last = rt
		}
		if now.Sub(last) > ActivityGap(idle)+5*time.Second {
			t.Fatalf("at %v: renewTime %v lags by more than the gap plus one check", now, last)
		}
	}
	// One write per gap: 20 in an hour, plus the creation.
	if n, want := len(leaseWrites(cs)), int(time.Hour/ActivityGap(idle))+1; n > want {
		t.Errorf("%d Lease writes in an hour; want at most %d", n, want)
	}
}

// A write that conflicts (another replica wrote first) is decided again
// on the Lease read anew: here the other replica's activity is recent
// enough, so nothing more is written.
func TestRecordActivityConflict(t *testing.T) {
	cs := fake.NewClientset(activityLease(t0))
	cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		// The other replica's write lands first.
		l := activityLease(t0.Add(ActivityGap(idle)))
		l.ResourceVersion = "4"
		if err := cs.Tracker().Update(schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}, l, "apps"); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, l.Name, nil)
	})
	s := NewScaler(cs, zerolog.Nop())
	if err := s.RecordActivity(context.Background(), webDeploy, t0.Add(ActivityGap(idle)+time.Second), idle); err != nil {
		t.Fatal(err)
	}
	if n := len(leaseWrites(cs)); n != 1 {
		t.Errorf("%d Lease writes; want 1 (the conflicting one, not retried)", n)
	}
}

// ScaleDownIfIdle scales by the Lease's age: to zero once the activity it
// records is older than idle_after plus the gap; a workload without a
// Lease gets one (a whole idle_after from now); a Lease changed meanwhile
// (activity recorded by another replica) cancels the scale-down.
func TestScaleDownIfIdle(t *testing.T) {
	gr := schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}
	for _, tc := range []struct {
		name        string
		lease       *coordinationv1.Lease
		leaseErr    error
		wantScaled  bool
		wantCreated bool
	}{
		{"idle", activityLease(t0.Add(-idle - ActivityGap(idle))), nil, true, false},
		{"within-idle-plus-gap", activityLease(t0.Add(-idle - ActivityGap(idle) + time.Second)), nil, false, false},
		{"no-lease", nil, nil, false, true},
		{"activity-recorded-meanwhile", activityLease(t0.Add(-time.Hour)), apierrors.NewConflict(gr, "x", nil), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, updates := scaleAPI(t, []int32{1}, nil)
			if tc.lease != nil {
				if err := cs.Tracker().Add(tc.lease); err != nil {
					t.Fatal(err)
				}
			}
			if tc.leaseErr != nil {
				cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, tc.leaseErr
				})
			}
			scaled, err := NewScaler(cs, zerolog.Nop()).ScaleDownIfIdle(context.Background(), webDeploy, idle, t0)
			if err != nil {
				t.Fatal(err)
			}
			if scaled != tc.wantScaled || (tc.wantScaled && (len(*updates) != 1 || (*updates)[0] != 0)) || (!tc.wantScaled && len(*updates) != 0) {
				t.Errorf("scaled = %v, scale updates = %v; want %v", scaled, *updates, tc.wantScaled)
			}
			created := false
			for _, a := range cs.Actions() {
				created = created || (a.GetVerb() == "create" && a.GetResource().Resource == "leases")
			}
			if created != tc.wantCreated {
				t.Errorf("Lease created = %v; want %v", created, tc.wantCreated)
			}
		})
	}
}
