package scale

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/watch"
)

// idleState is what the idler remembers of a workload between checks.
type idleState struct {
	requests  uint64    // the requests of its routes at the last check
	lastCheck time.Time // when the workload was last checked
}

// idleCallTimeout bounds each of the idler's API calls.
const idleCallTimeout = 5 * time.Second

// idleParallel is how many workloads the idler checks at once: with a
// slow or hung API server, one workload's calls do not hold up the
// others'.
const idleParallel = 4

// workloadActivity is one workload as the idler sees it: the routes that
// send to it (entries sharing a host may send to different workloads,
// and different hosts to one), summed.
type workloadActivity struct {
	w        watch.Workload
	idle     time.Duration // the longest idle_after of its routes
	host     string        // of a route with idle_after, for logs
	requests uint64
	active   int64
}

// Idle records activity and scales idle workloads to zero for every
// workload a route with idle_after sends to, until stop is closed. Each
// workload is checked every idle_after/3 (at most every 5 s). Its
// activity is that of every route sending to it, counted per route
// (route.Route.Activity): two routes of one host that send to different
// workloads are idle apart, while the host's series count them together.
// Activity is written only when it is ActivityGap later than the one
// recorded (watch.Scaler), so the checks mostly cost nothing. The API
// calls are cancelled when stop is closed (Shutdown) and the idler returns
// only once they have.
func (p *Policy) Idle(stop <-chan struct{}, routes func() *route.Table) {
	// ctx ends the checks' calls as soon as stop is closed: a hung API
	// server cannot hold up Shutdown, which waits for the idler.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		select {
		case <-stop:
		case <-ctx.Done():
		}
		cancel()
	})
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	state := make(map[watch.Workload]*idleState) // by workload, so it survives reloads
	// The routes that count, worked out once per routing table: a tick
	// must not walk 10,000 routes when a few have idle_after (issue 13).
	var (
		table   *route.Table
		counted []*route.Route
	)
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if p.scaler == nil {
				continue
			}
			if rt := routes(); rt != table {
				table, counted = rt, idleRoutes(rt)
			}
			works := workloads(counted)
			var g errgroup.Group
			g.SetLimit(idleParallel)
			for w, a := range works {
				st := state[w]
				if st == nil {
					state[w] = &idleState{requests: a.requests, lastCheck: now}
					p.note(w, func(s *WorkloadState) { s.IdleAfter, s.IdleSince = a.idle, now })
					continue
				}
				if now.Sub(st.lastCheck) < min(5*time.Second, a.idle/3) {
					continue
				}
				st.lastCheck = now
				g.Go(func() error {
					p.idleCheck(ctx, a, st, now)
					return nil
				})
			}
			_ = g.Wait()
			for w := range state {
				if works[w] == nil {
					delete(state, w)
					p.note(w, func(s *WorkloadState) { s.IdleAfter, s.IdleSince = 0, time.Time{} })
				}
			}
		}
	}
}

// idleRoutes lists t's routes that send to a workload some route with
// idle_after sends to: those whose activity the idler sums.
func idleRoutes(t *route.Table) []*route.Route {
	idle := make(map[watch.Workload]bool)
	for _, r := range t.All() {
		if r.Svc.IdleAfter.Set {
			idle[workloadOf(r.Svc)] = true
		}
	}
	if len(idle) == 0 {
		return nil
	}
	var out []*route.Route
	for _, r := range t.All() {
		if idle[workloadOf(r.Svc)] {
			out = append(out, r)
		}
	}
	return out
}

// workloads sums routes per workload, for the workloads that some route
// with idle_after sends to.
func workloads(routes []*route.Route) map[watch.Workload]*workloadActivity {
	out := make(map[watch.Workload]*workloadActivity)
	for _, r := range routes {
		w := workloadOf(r.Svc)
		a := out[w]
		if a == nil {
			a = &workloadActivity{w: w}
			out[w] = a
		}
		n, active := r.Activity()
		a.requests += n
		a.active += active
		if r.Svc.IdleAfter.Set && r.Svc.IdleAfter.Duration > a.idle {
			a.idle, a.host = r.Svc.IdleAfter.Duration, r.Host
		}
	}
	return out
}

// idleCheck records a's activity, or scales it down if it had none. Its
// calls end at idleCallTimeout or with parent, whichever is first.
func (p *Policy) idleCheck(parent context.Context, a *workloadActivity, st *idleState, now time.Time) {
	ctx, cancel := context.WithTimeout(parent, idleCallTimeout)
	defer cancel()
	p.note(a.w, func(s *WorkloadState) { s.IdleAfter = a.idle })
	if a.active > 0 || a.requests != st.requests {
		st.requests = a.requests
		p.note(a.w, func(s *WorkloadState) { s.IdleSince = now })
		if err := p.scaler.RecordActivity(ctx, a.w, now, a.idle); err != nil && parent.Err() == nil {
			p.log.Warn().Err(err).Str("host", a.host).Str("workload", a.w.Name).Msg("record activity failed")
		}
		return
	}
	down, err := p.scaler.ScaleDownIfIdle(ctx, a.w, a.idle, now)
	if err != nil && parent.Err() == nil {
		p.log.Warn().Err(err).Str("host", a.host).Str("workload", a.w.Name).Msg("idle scale-down failed")
	}
	if down {
		p.note(a.w, func(s *WorkloadState) { s.LastScaleDown = now })
	}
}
