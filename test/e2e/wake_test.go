//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// Issue 7: Agimo raises a workload at zero to min_replicas itself (wake = true), once per
// cold start, and scales idle ones back to zero (idle_after), coordinated across replicas by
// an activity Lease per workload (coordination.k8s.io, "agimo-<kind>-<name>"). These tests
// check the replicas really change in the API; the test then plays kubelet (Pod +
// EndpointSlice ready) as elsewhere.

// getReplicas reads spec.replicas of w through its scale subresource, as Agimo and KEDA do.
func (w workload) getReplicas(c context.Context) (int32, error) {
	var (
		sc  *autoscalingv1.Scale
		err error
	)
	if w.Kind == "deployment" {
		sc, err = env.client.AppsV1().Deployments(w.NS).GetScale(c, w.Name, metav1.GetOptions{})
	} else {
		sc, err = env.client.AppsV1().StatefulSets(w.NS).GetScale(c, w.Name, metav1.GetOptions{})
	}
	if err != nil {
		return 0, err
	}
	return sc.Spec.Replicas, nil
}

func (w workload) replicas(t *testing.T) int32 {
	t.Helper()
	n, err := w.getReplicas(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitReplicas waits until spec.replicas of w is n.
func (w workload) waitReplicas(t *testing.T, n int32, d time.Duration) {
	t.Helper()
	c := ctx(t)
	eventually(t, d, fmt.Sprintf("%s %s/%s at %d replicas", w.Kind, w.NS, w.Name, n), func() bool {
		r, err := w.getReplicas(c)
		return err == nil && r == n
	})
}

// lastActivity reads the activity Agimo recorded for w: its Lease's renewTime.
func (w workload) lastActivity(t *testing.T) (time.Time, error) {
	t.Helper()
	l, err := env.client.CoordinationV1().Leases(w.NS).Get(ctx(t), "agimo-"+w.Kind+"-"+w.Name, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, err
	}
	if l.Spec.RenewTime == nil {
		return time.Time{}, fmt.Errorf("lease %s/%s has no renewTime", l.Namespace, l.Name)
	}
	return l.Spec.RenewTime.Time, nil
}

// scaleWatch reports the moment a workload at zero gets replicas, from a watch opened
// before whatever scales it, so the time is that of the API change (within ms).
type scaleWatch struct {
	w  workload
	up chan time.Time
}

// watchScaleUp starts watching w, which must be at zero replicas.
func (w workload) watchScaleUp(t *testing.T) *scaleWatch {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	opts := metav1.ListOptions{FieldSelector: "metadata.name=" + w.Name}
	var (
		wi       watch.Interface
		replicas *int32
		rv       string
		err      error
	)
	if w.Kind == "deployment" {
		var l *appsv1.DeploymentList
		if l, err = env.client.AppsV1().Deployments(w.NS).List(c, opts); err == nil && len(l.Items) == 1 {
			replicas, rv = l.Items[0].Spec.Replicas, l.ResourceVersion
		}
	} else {
		var l *appsv1.StatefulSetList
		if l, err = env.client.AppsV1().StatefulSets(w.NS).List(c, opts); err == nil && len(l.Items) == 1 {
			replicas, rv = l.Items[0].Spec.Replicas, l.ResourceVersion
		}
	}
	if err != nil || replicas == nil {
		t.Fatalf("list %s %s: %v", w.Kind, w.Name, err)
	}
	if *replicas != 0 {
		t.Fatalf("%s %s has %d replicas; want 0 before watching for a wake-up", w.Kind, w.Name, *replicas)
	}
	opts.ResourceVersion = rv
	if w.Kind == "deployment" {
		wi, err = env.client.AppsV1().Deployments(w.NS).Watch(c, opts)
	} else {
		wi, err = env.client.AppsV1().StatefulSets(w.NS).Watch(c, opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &scaleWatch{w: w, up: make(chan time.Time, 1)}
	go func() {
		defer wi.Stop()
		for ev := range wi.ResultChan() {
			var r *int32
			switch o := ev.Object.(type) {
			case *appsv1.Deployment:
				r = o.Spec.Replicas
			case *appsv1.StatefulSet:
				r = o.Spec.Replicas
			}
			if r != nil && *r > 0 {
				s.up <- time.Now()
				return
			}
		}
	}()
	return s
}

// waitOK returns when the workload was seen scaled up, or false after d.
func (s *scaleWatch) waitOK(d time.Duration) (time.Time, bool) {
	select {
	case at := <-s.up:
		return at, true
	case <-time.After(d):
		return time.Time{}, false
	}
}

func (s *scaleWatch) wait(t *testing.T, d time.Duration) time.Time {
	t.Helper()
	at, ok := s.waitOK(d)
	if !ok {
		t.Fatalf("%s %s/%s still at zero replicas after %s", s.w.Kind, s.w.NS, s.w.Name, d)
	}
	return at
}

// bootPod plays kubelet for a workload that was scaled up: once kube-controller-manager
// has created a Pod, fake pod p becomes that Pod's ready endpoint.
func (w workload) bootPod(t *testing.T, p *fakePod) {
	t.Helper()
	names := w.pods(t, 1)
	w.setEndpoints(t, readyEndpoint(p, names[0]))
}

func wakeSeries(host string) (wakes, errs string) {
	return fmt.Sprintf("agimo_wakeups_total{host=%q}", host), fmt.Sprintf("agimo_wakeup_errors_total{host=%q}", host)
}

// wake = true: requests parked on a workload at zero make Agimo raise it to min_replicas,
// once for the cold start however many requests park; a later cold start wakes it again.
func TestWake(t *testing.T) {
	for _, kind := range []string{"deployment", "statefulset"} {
		t.Run(kind, func(t *testing.T) {
			ns := newNamespace(t)
			w := createWorkload(t, ns, "web", kind)
			pod := startPod(t, "web-"+kind)
			a := startAgimo(t, "timeout = '60s'\n"+w.Config("wake = true", "min_replicas = 2"), agimoOpts{})
			wakes, wakeErrs := wakeSeries(w.Host())

			up := w.watchScaleUp(t)
			t0 := time.Now()
			var parked []<-chan result
			for i := range 5 {
				parked = append(parked, a.getAsync(w.Host(), fmt.Sprintf("/cold-%d", i)))
			}
			at := up.wait(t, 20*time.Second)
			if got := w.replicas(t); got != 2 {
				t.Fatalf("spec.replicas = %d after the wake-up; want min_replicas = 2", got)
			}
			t.Logf("%s: spec.replicas 0 -> 2 by agimo %s after the first request", kind, at.Sub(t0).Round(time.Millisecond))
			a.waitParked(t, w.Host(), 5) // not ready yet: all still parked
			eventually(t, 5*time.Second, "agimo_wakeups_total = 1", func() bool { return a.metric(t, wakes) == 1 })

			w.bootPod(t, pod)
			for _, ch := range parked {
				expectFrom(t, awaitResult(t, ch, 30*time.Second), pod)
			}
			if got := a.metric(t, wakes); got != 1 {
				t.Errorf("agimo_wakeups_total = %v after 5 parked requests; want 1 (one per cold start)", got)
			}
			if got := a.metric(t, wakeErrs); got != 0 {
				t.Errorf("agimo_wakeup_errors_total = %v; want 0", got)
			}
			if got := w.replicas(t); got != 2 {
				t.Errorf("spec.replicas = %d; want 2", got)
			}

			// Back to zero (KEDA, idle_after or a person), pods and endpoints gone: the
			// next request is a new cold start and wakes the workload again.
			w.scale(t, 0)
			w.deleteEndpoints(t)
			up = w.watchScaleUp(t)
			again := parkOne(t, a, w.Host(), "/again")
			up.wait(t, 20*time.Second)
			w.bootPod(t, pod)
			expectFrom(t, awaitResult(t, again, 30*time.Second), pod)
			if got := a.metric(t, wakes); got != 2 {
				t.Errorf("agimo_wakeups_total = %v after a second cold start; want 2", got)
			}
		})
	}
}

// Two Agimo replicas parking requests for the same workload at once: it is raised once,
// to min_replicas, by one of them (the scale update is conditional on resourceVersion).
func TestWakeTwoAgimos(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-two")
	cfg := "timeout = '60s'\n" + w.Config("wake = true")
	a, b := startAgimo(t, cfg, agimoOpts{}), startAgimo(t, cfg, agimoOpts{})
	wakes, wakeErrs := wakeSeries(w.Host())

	up := w.watchScaleUp(t)
	var parked []<-chan result
	for i := range 3 {
		parked = append(parked, a.getAsync(w.Host(), fmt.Sprintf("/a-%d", i)), b.getAsync(w.Host(), fmt.Sprintf("/b-%d", i)))
	}
	up.wait(t, 20*time.Second)
	a.waitParked(t, w.Host(), 3)
	b.waitParked(t, w.Host(), 3)
	eventually(t, 5*time.Second, "a wake-up counted", func() bool { return a.metric(t, wakes)+b.metric(t, wakes) >= 1 })
	time.Sleep(500 * time.Millisecond) // room for a second, wrong, scale-up to show
	if got := w.replicas(t); got != 1 {
		t.Errorf("spec.replicas = %d with two agimos waking; want min_replicas = 1", got)
	}
	if na, nb := a.metric(t, wakes), b.metric(t, wakes); na+nb != 1 {
		t.Errorf("agimo_wakeups_total: %v + %v; want exactly one wake-up between the two", na, nb)
	}
	if ea, eb := a.metric(t, wakeErrs), b.metric(t, wakeErrs); ea+eb != 0 {
		t.Errorf("agimo_wakeup_errors_total: %v + %v; want 0 (a lost race is not an error)", ea, eb)
	}
	w.bootPod(t, pod)
	for _, ch := range parked {
		expectFrom(t, awaitResult(t, ch, 30*time.Second), pod)
	}
	if got := w.replicas(t); got != 1 {
		t.Errorf("spec.replicas = %d; want 1", got)
	}
}

// A cold start that failed (the pod never got ready, every parked request timed out) and a
// workload taken back to zero afterwards (idle_after, KEDA, a person): the next request is a
// new cold start and must wake the workload again.
func TestWakeAfterFailedColdStart(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-failed")
	a := startAgimo(t, w.Config("wake = true", "timeout = '2s'"), agimoOpts{})
	wakes, _ := wakeSeries(w.Host())

	up := w.watchScaleUp(t)
	if r := a.get(w.Host(), "/never-ready"); r.Status != 503 {
		t.Fatalf("status %d %q (err %v); want 503 after the timeout", r.Status, r.Body, r.Err)
	}
	up.wait(t, 10*time.Second) // woken, but its pod never became ready
	w.scale(t, 0)              // and taken back to zero

	up = w.watchScaleUp(t)
	parked := a.getAsync(w.Host(), "/later")
	if _, ok := up.waitOK(10 * time.Second); !ok {
		r := awaitResult(t, parked, 10*time.Second)
		t.Fatalf("a request parked on the workload at zero did not wake it (agimo_wakeups_total = %v); it got %d",
			a.metric(t, wakes), r.Status)
	}
	w.bootPod(t, pod)
	expectFrom(t, awaitResult(t, parked, 10*time.Second), pod)
}

// agimo_cold_start_seconds{phase}: request parked -> scale issued (wake only) -> first
// endpoint ready -> first byte forwarded, each observed once per cold start, in that order.
func TestColdStartPhases(t *testing.T) {
	for _, wake := range []bool{true, false} {
		name := map[bool]string{true: "wake", false: "external-scaler"}[wake]
		t.Run(name, func(t *testing.T) {
			const boot = 300 * time.Millisecond // the simulated pod's start-up time
			ns := newNamespace(t)
			w := createWorkload(t, ns, "web", "deployment")
			pod := startPod(t, "web-phases-"+name)
			a := startAgimo(t, "timeout = '60s'\n"+w.Config(fmt.Sprintf("wake = %v", wake)), agimoOpts{})

			up := w.watchScaleUp(t)
			parked := a.getAsync(w.Host(), "/")
			if !wake {
				a.waitParked(t, w.Host(), 1)
				w.scale(t, 1) // as KEDA would
			}
			up.wait(t, 20*time.Second)
			time.Sleep(boot)
			w.bootPod(t, pod)
			r := awaitResult(t, parked, 30*time.Second)
			expectFrom(t, r, pod)

			sum := map[string]float64{}
			for _, ph := range []string{"scale", "ready", "first_byte"} {
				labels := fmt.Sprintf("{host=%q,phase=%q}", w.Host(), ph)
				n := a.metric(t, "agimo_cold_start_seconds_count"+labels)
				want := 1.0
				if ph == "scale" && !wake {
					want = 0 // Agimo did not scale: no such phase
				}
				if n != want {
					t.Errorf("agimo_cold_start_seconds_count%s = %v; want %v", labels, n, want)
				}
				if inf := a.metric(t, "agimo_cold_start_seconds_bucket"+strings.TrimSuffix(labels, "}")+`,le="+Inf"}`); inf != n {
					t.Errorf("phase %s: +Inf bucket %v != count %v", ph, inf, n)
				}
				sum[ph] = a.metric(t, "agimo_cold_start_seconds_sum"+labels)
			}
			t.Logf("%s: cold start phases: scale %.3fs, ready %.3fs, first_byte %.3fs (client saw %.3fs)",
				name, sum["scale"], sum["ready"], sum["first_byte"], r.Elapsed.Seconds())
			if wake && !(sum["scale"] > 0 && sum["scale"] <= sum["ready"]) {
				t.Errorf("phase scale (%.3fs) not in (0, ready = %.3fs]", sum["scale"], sum["ready"])
			}
			if wake && sum["ready"]-sum["scale"] < boot.Seconds() {
				t.Errorf("ready - scale = %.3fs, shorter than the pod's %s start-up", sum["ready"]-sum["scale"], boot)
			}
			if !(sum["ready"] >= boot.Seconds() && sum["ready"] <= sum["first_byte"]) {
				t.Errorf("phase ready (%.3fs) not in [%s, first_byte = %.3fs]", sum["ready"], boot, sum["first_byte"])
			}
			if sum["first_byte"] > r.Elapsed.Seconds() {
				t.Errorf("first_byte %.3fs later than the client's whole request (%s)", sum["first_byte"], r.Elapsed)
			}
		})
	}
}

// idle_after: once traffic stops the workload goes to zero within about idle_after plus
// two of Agimo's 5 s idle ticks; health checks (probe filter) do not keep it up; and the
// next request wakes it again: scale to zero and back with no KEDA at all.
func TestIdleScaleDown(t *testing.T) {
	const idle, tick = 3 * time.Second, 5 * time.Second
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-idle")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config("wake = true", "idle_after = '3s'",
		"probe_user_agents = ['kube-probe']"), agimoOpts{})

	up := w.watchScaleUp(t)
	sent := time.Now()
	first := a.getAsync(w.Host(), "/")
	up.wait(t, 20*time.Second)
	w.bootPod(t, pod)
	r := awaitResult(t, first, 30*time.Second)
	expectFrom(t, r, pod)
	last := r.Done

	// kube-probe keeps probing: it must neither count as activity nor fail.
	stop := make(chan struct{})
	var (
		probeMu  sync.Mutex
		probeBad []string
		probeN   int
	)
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			pr := a.getWith(w.Host(), "/healthz", http.Header{"User-Agent": {"kube-probe/1.37"}})
			probeMu.Lock()
			probeN++
			if pr.Err != nil || pr.Status != 200 {
				probeBad = append(probeBad, fmt.Sprintf("%d %v", pr.Status, pr.Err))
			}
			probeMu.Unlock()
		}
	}()
	w.waitReplicas(t, 0, idle+3*tick+5*time.Second)
	down := time.Since(last)
	close(stop)
	<-probesDone
	t.Logf("idle_after = %s: scaled to zero %s after the last request (%d probes meanwhile)", idle, down.Round(time.Millisecond), probeN)
	if down < idle {
		t.Errorf("scaled to zero %s after the last request, before idle_after = %s", down, idle)
	}
	if limit := idle + 2*tick + 2*time.Second; down > limit {
		t.Errorf("scaled to zero %s after the last request; want within idle_after + 2 ticks (%s)", down, limit)
	}
	if len(probeBad) > 0 {
		t.Errorf("%d of %d probes failed: %v", len(probeBad), probeN, probeBad)
	}
	if got := a.metric(t, fmt.Sprintf("agimo_requests_total{host=%q}", w.Host())); got != 1 {
		t.Errorf("agimo_requests_total = %v; want 1 (probes are not requests)", got)
	}
	stamp, err := w.lastActivity(t)
	if err != nil {
		t.Fatalf("activity Lease: %v", err)
	}
	if stamp.Before(sent.Add(-time.Second)) || stamp.After(time.Now()) {
		t.Errorf("last activity %s; want between the request (%s) and now", stamp.Format(time.RFC3339Nano), sent.Format(time.RFC3339Nano))
	}

	// Pods and endpoints go with the replicas; the next request wakes it again.
	w.deleteEndpoints(t)
	up = w.watchScaleUp(t)
	again := parkOne(t, a, w.Host(), "/again")
	up.wait(t, 20*time.Second)
	w.bootPod(t, pod)
	expectFrom(t, awaitResult(t, again, 30*time.Second), pod)
}

// Two Agimo replicas with idle_after, traffic through only one of them: the other sees no
// requests, but the activity Lease the first keeps fresh stops it from scaling
// the workload down. When the traffic stops, it goes to zero.
func TestIdleScaleDownTwoAgimos(t *testing.T) {
	// idle_after above Agimo's 5 s activity-recording tick; see TestIdleShortIdleAfterTwoAgimos.
	const idle, tick, traffic = 8 * time.Second, 5 * time.Second, 16 * time.Second
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-idle-two")
	cfg := "timeout = '60s'\n" + w.Config("idle_after = '8s'")
	busy, quiet := startAgimo(t, cfg, agimoOpts{}), startAgimo(t, cfg, agimoOpts{})
	names := w.scale(t, 1)
	w.setEndpoints(t, readyEndpoint(pod, names[0]))
	eventually(t, 20*time.Second, "service ready", func() bool { return busy.get(w.Host(), "/").Status == 200 })

	end := time.Now().Add(traffic)
	var last time.Time
	for n := 0; time.Now().Before(end); n++ {
		r := busy.get(w.Host(), fmt.Sprintf("/busy-%d", n))
		expectFrom(t, r, pod)
		last = r.Done
		if got := w.replicas(t); got != 1 {
			t.Fatalf("scaled to %d while one agimo had traffic; the quiet agimo's log:\n%s", got, quiet.logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	w.waitReplicas(t, 0, idle+3*tick+5*time.Second)
	down := time.Since(last)
	t.Logf("idle_after = %s, two agimos: stayed up through %s of traffic on one; scaled to zero %s after the last request",
		idle, traffic, down.Round(time.Millisecond))
	if down < idle {
		t.Errorf("scaled to zero %s after the last request, before idle_after = %s", down, idle)
	}
}

// The same with idle_after shorter than Agimo's 5 s idle tick (a value the config accepts),
// and the two replicas' ticks about 4 s apart: the busy replica records its activity every
// idle_after/3 at most, and the quiet one scales down only past idle_after plus that.
func TestIdleShortIdleAfterTwoAgimos(t *testing.T) {
	const traffic = 16 * time.Second
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-idle-short")
	cfg := "timeout = '60s'\n" + w.Config("idle_after = '3s'")
	busy := startAgimo(t, cfg, agimoOpts{})
	names := w.scale(t, 1)
	w.setEndpoints(t, readyEndpoint(pod, names[0]))
	eventually(t, 20*time.Second, "service ready", func() bool { return busy.get(w.Host(), "/").Status == 200 })
	// Traffic from here on; the second replica starts (and ticks) ~4 s after the first.
	var quiet *agimoProc
	started := time.Now()
	end := started.Add(traffic)
	for n := 0; time.Now().Before(end); n++ {
		if quiet == nil && time.Since(started) > 3*time.Second {
			quiet = startAgimo(t, cfg, agimoOpts{})
		}
		expectFrom(t, busy.get(w.Host(), fmt.Sprintf("/busy-%d", n)), pod)
		if got := w.replicas(t); got != 1 {
			t.Fatalf("scaled to %d after %s while one agimo had traffic every 250ms; quiet agimo's log:\n%s",
				got, time.Since(started).Round(time.Millisecond), quiet.logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
