package watch

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/agimo/agimo/conf"
)

// scaleAPI fakes the scale subresource: gets return the replicas in
// order (the last repeats), updates are recorded or fail with updateErr
// once.
func scaleAPI(t *testing.T, replicas []int32, updateErr error) (*fake.Clientset, *[]int32) {
	cs := fake.NewClientset()
	var updates []int32
	gets := 0
	cs.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		r := replicas[min(gets, len(replicas)-1)]
		gets++
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", ResourceVersion: "7"}, Spec: autoscalingv1.ScaleSpec{Replicas: r}}, nil
	})
	cs.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		if updateErr != nil {
			err := updateErr
			updateErr = nil
			return true, nil, err
		}
		sc := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		if sc.ResourceVersion != "7" {
			t.Errorf("update without the resourceVersion read: %q", sc.ResourceVersion)
		}
		updates = append(updates, sc.Spec.Replicas)
		return true, sc, nil
	})
	return cs, &updates
}

// WakeUp raises a workload at zero once, leaves one above zero alone,
// gives way when another writer changed it meanwhile (conflict), and
// names the missing permission when forbidden.
func TestWakeUp(t *testing.T) {
	w := Workload{Kind: conf.KindDeployment, Namespace: "apps", Name: "web"}
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	for _, tc := range []struct {
		name        string
		replicas    []int32
		updateErr   error
		wantScaled  bool
		wantUpdates []int32
		wantErr     string
	}{
		{"at-zero", []int32{0}, nil, true, []int32{2}, ""},
		{"already-up", []int32{3}, nil, false, nil, ""},
		{"conflict-then-up", []int32{0, 1}, apierrors.NewConflict(gr, "web", nil), false, nil, ""},
		{"forbidden", []int32{0}, apierrors.NewForbidden(gr, "web", nil), false, nil, `grant get and update on deployments/scale (apiGroup "apps") in namespace apps`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, updates := scaleAPI(t, tc.replicas, tc.updateErr)
			scaled, err := NewScaler(cs, zerolog.Nop()).WakeUp(context.Background(), w, 2)
			if scaled != tc.wantScaled {
				t.Errorf("scaled = %v; want %v", scaled, tc.wantScaled)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v; want %q", err, tc.wantErr)
			}
			if len(*updates) != len(tc.wantUpdates) || (len(tc.wantUpdates) > 0 && (*updates)[0] != tc.wantUpdates[0]) {
				t.Errorf("updates = %v; want %v", *updates, tc.wantUpdates)
			}
		})
	}
}
