package watch

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The fault tests' rig (faults_test.go, outage_test.go).

// faultKey is the one service every fault test watches.
var faultKey = Key{Namespace: "apps", Service: "web", Port: 80}

// faultRig is a fake API server with switchable faults, installed before
// the watcher starts (the fake's reactor chain is not safe to change
// while informers use it).
type faultRig struct {
	cs   *fake.Clientset
	w    *Watcher
	set  *metrics.Set
	logs *syncBuffer
	// fail, when non-nil, is returned for every list and watch of
	// EndpointSlices and Services.
	fail atomic.Pointer[error]
	// hang, while non-nil, blocks lists until closed.
	hang atomic.Pointer[chan struct{}]
	// watches receives the first watch of EndpointSlices, which the test
	// controls; later watches go to the fake's tracker.
	ownWatch atomic.Bool
	watches  chan *apiwatch.FakeWatcher
	// failed receives a value for every list or watch failed with fail
	// (dropped once full): the signal that the informers tried again.
	failed chan string
	// handled receives every event the watcher has handled (dropped once
	// full).
	handled chan any
}

func newFaultRig(t *testing.T, objs ...runtime.Object) *faultRig {
	t.Helper()
	r := &faultRig{cs: fake.NewClientset(objs...), set: metrics.NewSet(), logs: &syncBuffer{}, watches: make(chan *apiwatch.FakeWatcher, 1), failed: make(chan string, 1024), handled: make(chan any, 1024)}
	for _, res := range []string{"endpointslices", "services"} {
		r.cs.PrependReactor("list", res, func(k8stesting.Action) (bool, runtime.Object, error) {
			if h := r.hang.Load(); h != nil {
				<-*h
			}
			if err := r.fail.Load(); err != nil {
				r.noteFailed("list " + res)
				return true, nil, *err
			}
			return false, nil, nil
		})
		r.cs.PrependWatchReactor(res, func(a k8stesting.Action) (bool, apiwatch.Interface, error) {
			if err := r.fail.Load(); err != nil {
				r.noteFailed("watch " + res)
				return true, nil, *err
			}
			if a.GetResource().Resource == "endpointslices" && r.ownWatch.CompareAndSwap(true, false) {
				fw := apiwatch.NewFakeWithChanSize(16, false)
				r.watches <- fw
				return true, fw, nil
			}
			return false, nil, nil
		})
	}
	r.w = New(r.cs, []Key{faultKey}, zerolog.New(r.logs), r.set)
	r.w.syncWarn = 300 * time.Millisecond
	r.w.handled = func(obj any) {
		select {
		case r.handled <- obj:
		default:
		}
	}
	t.Cleanup(func() {
		if h := r.hang.Swap(nil); h != nil {
			close(*h)
		}
		r.w.Close()
	})
	return r
}

func (r *faultRig) noteFailed(call string) {
	select {
	case r.failed <- call:
	default:
	}
}

// waitFailed waits until n more calls failed with the injected fault.
func (r *faultRig) waitFailed(t *testing.T, n int, within time.Duration, what string) {
	t.Helper()
	timeout := time.After(within)
	for i := range n {
		select {
		case <-r.failed:
		case <-timeout:
			t.Fatalf("after %v: %d of %d failed calls %s", within, i, n, what)
		}
	}
}

// waitFailedOf waits until n more calls named call ("list endpointslices")
// failed with the injected fault; the n-th starting means the reports of
// the earlier ones (counter, log) are done.
func (r *faultRig) waitFailedOf(t *testing.T, call string, n int, within time.Duration) {
	t.Helper()
	timeout := time.After(within)
	for seen := 0; seen < n; {
		select {
		case c := <-r.failed:
			if c == call {
				seen++
			}
		case <-timeout:
			t.Fatalf("after %v: %d of %d failed %q calls", within, seen, n, call)
		}
	}
}

// waitLog waits until the log contains s.
func (r *faultRig) waitLog(t *testing.T, s string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(r.logs.String(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: log lacks %q:\n%s", within, s, r.logs.String())
		}
	}
}

// waitHandled waits until the watcher has handled an event for which ok
// holds.
func (r *faultRig) waitHandled(t *testing.T, within time.Duration, what string, ok func(any) bool) {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case obj := <-r.handled:
			if ok(obj) {
				return
			}
		case <-timeout:
			t.Fatalf("after %v: no event handled for %s", within, what)
		}
	}
}

func (r *faultRig) setFail(err error) {
	if err == nil {
		r.fail.Store(nil)
		return
	}
	r.fail.Store(&err)
}

// start runs Start in the background and returns its result channel.
func (r *faultRig) start(timeout time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done <- r.w.Start(ctx)
	}()
	return done
}

// metric returns the value of the series named exactly name, or -1.
func (r *faultRig) metric(name string) float64 {
	var b strings.Builder
	r.set.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

func webService() *corev1.Service {
	return service("apps", "web", corev1.ServicePort{Name: "http", Port: 80})
}

func webSlice(ready bool, ips ...string) *discoveryv1.EndpointSlice {
	var eps []discoveryv1.Endpoint
	for _, ip := range ips {
		eps = append(eps, ep(ip, ptr(ready), nil))
	}
	return slice("apps", "web-1", "web", ptr("http"), 8080, eps...)
}

func (r *faultRig) updateSlice(t *testing.T, es *discoveryv1.EndpointSlice) {
	t.Helper()
	if _, err := r.cs.DiscoveryV1().EndpointSlices("apps").Update(context.Background(), es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits, by broadcast only, until s's state satisfies ok.
func waitFor(t *testing.T, s *Service, within time.Duration, what string, ok func(*State) bool) *State {
	t.Helper()
	timeout := time.After(within)
	for {
		st := s.State()
		if ok(st) {
			return st
		}
		select {
		case <-st.Changed():
		case <-timeout:
			t.Fatalf("after %v: state ready=%v addrs=%v; want %s", within, st.Ready, st.Addrs, what)
		}
	}
}

func hasAddrs(want ...string) func(*State) bool {
	return func(st *State) bool { return st.Ready && slices.Equal(st.Addrs, want) }
}
