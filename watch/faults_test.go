package watch

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiwatch "k8s.io/apimachinery/pkg/watch"
)

// API-server faults (issue 6): down or hanging at start, down or
// answering 403 mid-run, expiring watches, flapping endpoints. The rule:
// readiness (/readyz) reflects only the first sync; after it, Agimo keeps
// serving from the last known state, says what is wrong in metrics and
// logs, and catches up with changes made meanwhile once the API server is
// back. The fake clientset's reactors stand in for the API server; the
// informers, reflectors and their backoff are the real ones.

// The API server is down (lists fail) or hangs (lists never answer) when
// Agimo starts: it is not synced, /readyz stays 503 and
// agimo_watch_synced 0, and errors are counted and logged; once the API
// server recovers, Start returns, Synced is true and the state is served.
func TestAPIServerDownAtStart(t *testing.T) {
	for _, mode := range []string{"erroring", "hanging"} {
		t.Run(mode, func(t *testing.T) {
			r := newFaultRig(t, webService(), webSlice(true, "10.0.0.1"))
			var release chan struct{}
			if mode == "erroring" {
				r.setFail(apierrors.NewServiceUnavailable("etcd is down"))
			} else {
				release = make(chan struct{})
				r.hang.Store(&release)
			}
			done := r.start(30 * time.Second)
			// Wait until the fault has been met: two failed lists (the
			// first then fully reported), or the warning about the wait.
			if mode == "erroring" {
				r.waitFailedOf(t, "list endpointslices", 2, 10*time.Second)
			} else {
				r.waitLog(t, "has not answered the first list yet", 10*time.Second)
			}
			select {
			case err := <-done:
				t.Fatalf("Start returned %v while the API server is %s; want it to keep waiting", err, mode)
			default:
			}
			if r.w.Synced() {
				t.Fatalf("Synced() = true while the API server is %s", mode)
			}
			if got := r.metric("agimo_watch_synced"); got != 0 {
				t.Errorf("agimo_watch_synced = %v; want 0", got)
			}
			if st := r.w.Service(faultKey).State(); st.Ready {
				t.Errorf("ready before the first sync")
			}
			if mode == "erroring" {
				if got := r.metric(`agimo_watch_errors_total{resource="endpointslices"}`); got < 1 {
					t.Errorf("agimo_watch_errors_total{endpointslices} = %v; want ≥ 1", got)
				}
				if !strings.Contains(r.logs.String(), "serving from last known state and retrying") {
					t.Errorf("no warning logged for the failing list:\n%s", r.logs.String())
				}
				r.setFail(nil)
			} else {
				// Nothing fails, so only the wait itself can be logged.
				if !strings.Contains(r.logs.String(), "has not answered the first list yet") {
					t.Errorf("no warning logged while the API server hangs:\n%s", r.logs.String())
				}
				r.hang.Store(nil)
				close(release)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Start: %v; want nil once the API server is back", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("Start did not return after the API server recovered")
			}
			if !r.w.Synced() || r.metric("agimo_watch_synced") != 1 {
				t.Errorf("Synced() = %v, agimo_watch_synced = %v; want true, 1", r.w.Synced(), r.metric("agimo_watch_synced"))
			}
			waitFor(t, r.w.Service(faultKey), 5*time.Second, "ready at 10.0.0.1:8080", hasAddrs("10.0.0.1:8080"))
		})
	}
}

// A watch that expires (410 Gone: the API server compacted past the
// watcher's resource version) makes the reflector relist, which picks up
// the changes the broken watch never delivered.
func TestWatchExpiredRelists(t *testing.T) {
	r := newFaultRig(t, webService(), webSlice(true, "10.0.0.1"))
	r.ownWatch.Store(true)
	if err := <-r.start(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.w.Service(faultKey)
	waitFor(t, s, 5*time.Second, "ready at 10.0.0.1", hasAddrs("10.0.0.1:8080"))
	var fw *apiwatch.FakeWatcher
	select {
	case fw = <-r.watches:
	case <-time.After(5 * time.Second):
		t.Fatal("the informer never watched EndpointSlices")
	}
	// Change the slice behind the controlled watch's back: no event.
	r.updateSlice(t, webSlice(true, "10.0.0.2"))
	// An event on the controlled watch (a second slice, 10.0.0.3) is
	// handled after anything delivered before it: the state then has
	// 10.0.0.1, not 10.0.0.2, if the informer's only watch is the test's.
	marker := slice("apps", "web-marker", "web", ptr("http"), 8080, ep("10.0.0.3", ptr(true), nil))
	fw.Add(marker)
	r.waitHandled(t, 5*time.Second, "the marker slice", func(obj any) bool {
		es, ok := obj.(*discoveryv1.EndpointSlice)
		return ok && es.Name == "web-marker"
	})
	if got := s.State(); !hasAddrs("10.0.0.1:8080", "10.0.0.3:8080")(got) {
		t.Fatalf("state %v after the marker; want [10.0.0.1:8080 10.0.0.3:8080]: the test's watch is not the informer's", got.Addrs)
	}
	fw.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired, Message: "too old resource version: 1 (5)"})
	waitFor(t, s, 10*time.Second, "ready at 10.0.0.2 after the relist", hasAddrs("10.0.0.2:8080"))
	// The new watch is live again.
	r.updateSlice(t, webSlice(false, "10.0.0.2"))
	waitFor(t, s, 5*time.Second, "not ready after an event on the new watch", func(st *State) bool { return !st.Ready })
	if !r.w.Synced() {
		t.Error("Synced() = false after a relist; want it to stay true")
	}
}

// Mid-run, the API server goes down or starts answering 403 (RBAC
// revoked): the last known state keeps being served unchanged, /readyz is
// unaffected, errors are counted and logged (a 403 naming the missing
// permission), the event age grows; when the API server is back, changes
// made meanwhile are picked up.
func TestAPIServerFaultMidRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		log  string
		call string // a call that fails repeatedly during the outage
	}{
		{"down", apierrors.NewServiceUnavailable("apiserver is restarting"), "serving from last known state and retrying", "list endpointslices"},
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", nil), "list and watch endpointslices", "list endpointslices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFaultRig(t, webService(), webSlice(true, "10.0.0.1"))
			r.ownWatch.Store(true)
			if err := <-r.start(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			s := r.w.Service(faultKey)
			st := waitFor(t, s, 5*time.Second, "ready at 10.0.0.1", hasAddrs("10.0.0.1:8080"))
			fw := <-r.watches
			errsBefore := r.metric(`agimo_watch_errors_total{resource="endpointslices"}`)

			// Break the API server, then end the informer's watch with the
			// same error, as a real API server would.
			outage := time.Now()
			r.setFail(tc.err)
			status := tc.err.(apierrors.APIStatus).Status()
			fw.Error(&status)
			// Meanwhile the cluster changes; Agimo cannot know yet.
			r.updateSlice(t, webSlice(true, "10.0.0.9"))
			// Two more failed calls: the informer has met the fault and
			// tried again, and the first one has been reported.
			r.waitFailedOf(t, tc.call, 2, 10*time.Second)
			if now := s.State(); now != st {
				t.Fatalf("state replaced while the API server is %s: ready=%v addrs=%v; want the last known state kept", tc.name, now.Ready, now.Addrs)
			}
			if !r.w.Synced() {
				t.Fatalf("Synced() = false during the outage; /readyz must reflect only the first sync")
			}
			if got := r.metric(`agimo_watch_errors_total{resource="endpointslices"}`); got <= errsBefore {
				t.Errorf("agimo_watch_errors_total{endpointslices} = %v (was %v); want it to grow during the outage", got, errsBefore)
			}
			// No event since the outage began: the age is at least its length.
			if since, age := time.Since(outage).Seconds(), r.metric("agimo_watch_last_event_age_seconds"); age < since {
				t.Errorf("agimo_watch_last_event_age_seconds = %v; want ≥ %.3f, the time since the outage began", age, since)
			}
			if !strings.Contains(r.logs.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, r.logs.String())
			}
			r.setFail(nil)
			waitFor(t, s, 20*time.Second, "ready at 10.0.0.9 after recovery", hasAddrs("10.0.0.9:8080"))
		})
	}
}

// Endpoints flapping ready/unready. Paced (each flip lands before the
// next), every flip is broadcast, in order, and nothing else is. In a
// burst, flips may coalesce (a waiter only needs the current state), but
// no waiter misses the end of it: every waiter, whatever state it parked
// on, is woken and sees the final state, which is correct.
func TestEndpointsFlapping(t *testing.T) {
	t.Run("paced", func(t *testing.T) {
		r := newFaultRig(t, webService(), webSlice(false, "10.0.0.1"))
		if err := <-r.start(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		s := r.w.Service(faultKey)
		st := s.State()
		for i := range 20 {
			ready := i%2 == 0
			r.updateSlice(t, webSlice(ready, "10.0.0.1"))
			select {
			case <-st.Changed():
			case <-time.After(5 * time.Second):
				t.Fatalf("flip %d (ready=%v) was not broadcast", i, ready)
			}
			next := s.State()
			if next.Ready != ready {
				t.Fatalf("flip %d: broadcast state ready=%v; want %v", i, next.Ready, ready)
			}
			st = next
		}
		// Nothing more is broadcast once the flips stop: a change that
		// leaves readiness as it is, once handled, has replaced nothing.
		es := webSlice(false, "10.0.0.1")
		es.Labels["unrelated"] = "change"
		r.updateSlice(t, es)
		r.waitHandled(t, 5*time.Second, "the unrelated change", func(obj any) bool {
			es, ok := obj.(*discoveryv1.EndpointSlice)
			return ok && es.Labels["unrelated"] == "change"
		})
		select {
		case <-st.Changed():
			t.Errorf("spurious broadcast after the last flip")
		default:
		}
	})
	t.Run("burst", func(t *testing.T) {
		r := newFaultRig(t, webService(), webSlice(false, "10.0.0.1"))
		if err := <-r.start(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		s := r.w.Service(faultKey)
		const flips = 200
		var wg sync.WaitGroup
		var woken, stuck atomic.Int64
		stop := make(chan struct{})
		// Waiters park on whatever state is current while the burst runs,
		// as parked requests would, and follow broadcasts to the end.
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := s.State()
				for {
					if st.Ready && slices.Equal(st.Addrs, []string{"10.0.0.2:8080"}) {
						woken.Add(1)
						return
					}
					select {
					case <-st.Changed():
						st = s.State()
					case <-stop:
						stuck.Add(1)
						return
					}
				}
			}()
			time.Sleep(time.Millisecond)
		}
		for i := range flips {
			r.updateSlice(t, webSlice(i%2 == 0, "10.0.0.1"))
		}
		r.updateSlice(t, webSlice(true, "10.0.0.2"))
		waitFor(t, s, 10*time.Second, "ready at 10.0.0.2 after the burst", hasAddrs("10.0.0.2:8080"))
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			close(stop)
			<-done
		}
		if n := stuck.Load(); n > 0 {
			t.Errorf("%d of 50 waiters never saw the final state: a broadcast was lost", n)
		}
		if n := woken.Load(); n != 50 {
			t.Errorf("%d of 50 waiters saw the final state; want all", n)
		}
	})
}
