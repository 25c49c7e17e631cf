//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The original design's scaling path, simulated: Prometheus scrapes agimo's /metrics every
// scrapeEvery, KEDA polls Prometheus every pollEvery and scales a workload at zero to 1 when
// agimo_active_requests > 0. Intervals as the original recommends (5 s scrape, KEDA's
// pollingInterval 2 in its ScaledObject).
const (
	scrapeEvery = 5 * time.Second
	pollEvery   = 2 * time.Second
)

// simulateKEDA runs that loop for w until stop is called. The first scrape happens
// scrapeIn from now and the first poll pollIn from now: the phases of the real loops
// relative to the request, which are random in a cluster. Errors go to the channel.
func simulateKEDA(a *agimoProc, w workload, scrapeIn, pollIn time.Duration) (stop func(), errc <-chan error) {
	c, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		series := fmt.Sprintf("agimo_active_requests{host=%q}", w.Host())
		scrape, poll := time.NewTimer(scrapeIn), time.NewTimer(pollIn)
		defer scrape.Stop()
		defer poll.Stop()
		last := 0.0 // the last scraped value, what a PromQL query returns
		for {
			select {
			case <-c.Done():
				return
			case <-scrape.C:
				scrape.Reset(scrapeEvery)
				v, err := a.scrape(series)
				if err != nil {
					errs <- err
					return
				}
				last = v
			case <-poll.C:
				poll.Reset(pollEvery)
				if last <= 0 {
					continue
				}
				n, err := w.getReplicas(c)
				if err == nil && n == 0 {
					err = w.setReplicas(c, 1)
				}
				if err != nil && c.Err() == nil {
					errs <- err
				}
				return // scaled (or failed): nothing more to do in this run
			}
		}
	}()
	return func() { cancel(); <-done }, errs
}

// Issue 7's measurement: the cold-start time a client sees (request sent -> response) with
// wake = true, against the Prometheus + KEDA path simulated above. The simulated kubelet
// makes the pod ready a fixed `boot` after spec.replicas changes, in both arms. The KEDA arm's
// scrape and poll phases are spread evenly over their intervals across the runs (run i: first
// scrape (i+0.5)/runs of 5 s after the request), so its median is the typical case.
func TestColdStartWakeVsKEDA(t *testing.T) {
	const (
		runs = 5
		boot = 500 * time.Millisecond
	)
	ns := newNamespace(t)
	pod := startPod(t, "web-measure")
	type arm struct {
		name string
		wake bool
	}
	arms := []arm{{"wake", true}, {"keda", false}}
	took := map[string][]time.Duration{}
	for _, arm := range arms {
		var (
			ws  []workload
			cfg strings.Builder
		)
		cfg.WriteString("timeout = '60s'\n")
		for i := range runs {
			w := createWorkload(t, ns, fmt.Sprintf("%s-%d", arm.name, i), "deployment")
			ws = append(ws, w)
			cfg.WriteString(w.Config(fmt.Sprintf("wake = %v", arm.wake)))
		}
		a := startAgimo(t, cfg.String(), agimoOpts{})
		for i, w := range ws {
			up := w.watchScaleUp(t)
			t0 := time.Now()
			parked := a.getAsync(w.Host(), "/")
			stop, kedaErrs := func() {}, (<-chan error)(nil)
			if !arm.wake {
				scrapeIn := time.Duration((float64(i) + 0.5) / runs * float64(scrapeEvery))
				pollIn := time.Duration((float64(i*3%runs) + 0.5) / runs * float64(pollEvery))
				stop, kedaErrs = simulateKEDA(a, w, scrapeIn, pollIn)
			}
			var at time.Time
			select {
			case at = <-up.up:
			case err := <-kedaErrs:
				t.Fatalf("simulated KEDA: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatalf("%s run %d: never scaled up", arm.name, i)
			}
			stop()
			time.Sleep(time.Until(at.Add(boot))) // the pod starts...
			w.bootPod(t, pod)                    // ...and is ready
			r := awaitResult(t, parked, 30*time.Second)
			expectFrom(t, r, pod)
			d := r.Done.Sub(t0)
			took[arm.name] = append(took[arm.name], d)
			t.Logf("%s run %d: scaled %s after the request, answered after %s", arm.name, i,
				at.Sub(t0).Round(time.Millisecond), d.Round(time.Millisecond))
		}
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d.Microseconds())/1000) }
	summary := func(ds []time.Duration) (string, time.Duration) {
		s := slices.Clone(ds)
		slices.Sort(s)
		med := s[len(s)/2]
		return fmt.Sprintf("median %s (min %s, max %s)", ms(med), ms(s[0]), ms(s[len(s)-1])), med
	}
	wake, wakeMed := summary(took["wake"])
	keda, kedaMed := summary(took["keda"])
	t.Logf("cold-start time over %d runs each, pod start-up %s, agimo race=%v: wake = true: %s; "+
		"Prometheus %s scrape + KEDA %s polling: %s; wake saves %s at the median",
		runs, boot, raceEnabled, wake, scrapeEvery, pollEvery, keda, ms(kedaMed-wakeMed))
	if wakeMed >= kedaMed {
		t.Errorf("wake (%s) not faster than the KEDA path (%s)", ms(wakeMed), ms(kedaMed))
	}
}
