package watch

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An RBAC denial keeps the watcher unsynced (so /readyz stays 503), and is
// logged naming the missing permission; the error counter counts it.
func TestForbiddenIsExplained(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", nil)
	})
	var logs syncBuffer
	set := metrics.NewSet()
	w := New(cs, []Key{{Namespace: "apps", Service: "web", Port: 80}}, zerolog.New(&logs), set)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := w.Start(ctx); err == nil {
		t.Fatal("Start succeeded; want an error while the list is forbidden")
	}
	defer w.Close()
	if w.Synced() {
		t.Error("Synced() = true; want false")
	}
	out := logs.String()
	for _, want := range []string{"forbidden by RBAC", `list and watch endpointslices (apiGroup \"discovery.k8s.io\") in namespace apps`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	var b strings.Builder
	set.WritePrometheus(&b)
	if !strings.Contains(b.String(), `agimo_watch_errors_total{resource="endpointslices"} `) ||
		strings.Contains(b.String(), `agimo_watch_errors_total{resource="endpointslices"} 0`) {
		t.Errorf("watch error counter not incremented:\n%s", b.String())
	}
}
