package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/watch"
)

// Scaler changes workloads' replicas (watch.Scaler), for wake = true and
// idle_after (issue 7).
type Scaler interface {
	WakeUp(ctx context.Context, w watch.Workload, replicas int32) (bool, error)
	RecordActivity(ctx context.Context, w watch.Workload, at time.Time, idle time.Duration) error
	ScaleDownIfIdle(ctx context.Context, w watch.Workload, idle time.Duration, now time.Time) (bool, error)
}

// coldStart follows one cold start of a route, from the first request
// parked to the first response byte forwarded, to time its phases.
type coldStart struct {
	start     time.Time
	waking    atomic.Bool // a scale-up was started for this cold start
	readyDone atomic.Bool
}

// beginCold notes a request parking on r: the first one starts a cold
// start, and with wake = true, raises the workload from zero once.
func (p *Proxy) beginCold(r *route) {
	cs := r.cs.Load()
	// A cold start older than the park timeout failed (its requests got
	// 503: the pod never became ready, or was scaled away again): this
	// request starts a new one, which may wake the workload again.
	if cs == nil || time.Since(cs.start) > r.timeout {
		fresh := &coldStart{start: time.Now()}
		if r.cs.CompareAndSwap(cs, fresh) {
			cs = fresh
		} else {
			cs = r.cs.Load()
		}
	}
	if !r.svc.Wake || p.opts.Scaler == nil || !cs.waking.CompareAndSwap(false, true) {
		return
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		go func() {
			select {
			case <-p.stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
		w := workloadOf(r.svc)
		// The wake is activity: record it before scaling up. Another replica,
		// which saw none of the parked requests, would otherwise find the Lease
		// as old as the time spent at zero and scale the woken workload back
		// down before this replica's next idle check records them (issue 15).
		// Its scale-down reads the scale, then the Lease: once it sees the
		// replicas, it sees this activity too.
		if r.svc.IdleAfter.Set {
			// Bounded apart: a slow Lease write must leave the wake its time.
			rctx, rcancel := context.WithTimeout(ctx, idleCallTimeout)
			if err := p.opts.Scaler.RecordActivity(rctx, w, time.Now(), r.svc.IdleAfter.Duration); err != nil {
				p.log.Warn().Err(err).Str("host", r.host).Msg("record activity before wake up failed")
			}
			rcancel()
		}
		scaled, err := p.opts.Scaler.WakeUp(ctx, w, int32(r.svc.MinReplicas))
		switch {
		case err != nil:
			p.log.Warn().Err(err).Str("host", r.host).Msg("wake up failed; waiting for another scaler")
			r.m.wakeErrors.Inc()
			cs.waking.Store(false) // let the next parked request try again
		case scaled:
			r.m.wakes.Inc()
			r.m.phase("scale").Update(time.Since(cs.start).Seconds())
		}
	}()
}

// readyCold notes a parked request released: the first ends the cold
// start's "ready" phase.
func (r *route) readyCold() {
	if cs := r.cs.Load(); cs != nil && cs.readyDone.CompareAndSwap(false, true) {
		r.m.phase("ready").Update(time.Since(cs.start).Seconds())
	}
}

// firstByteCold notes a response head received from upstream: the first
// after readiness ends the cold start.
func (r *route) firstByteCold() {
	if cs := r.cs.Load(); cs != nil && cs.readyDone.Load() && r.cs.CompareAndSwap(cs, nil) {
		r.m.phase("first_byte").Update(time.Since(cs.start).Seconds())
	}
}

func workloadOf(s conf.Service) watch.Workload {
	return watch.Workload{Kind: s.Type, Namespace: s.Namespace, Name: s.Name}
}

// idleState is what the idler remembers of a host between checks.
type idleState struct {
	requests  uint64    // agimo_requests_total at the last check
	lastCheck time.Time // when the host was last checked
}

// idleCallTimeout bounds each of the idler's API calls.
const idleCallTimeout = 5 * time.Second

// idleParallel is how many hosts the idler checks at once: with a slow or
// hung API server, one host's calls do not hold up the others'.
const idleParallel = 4

// idler records activity and scales idle workloads to zero for every
// route with idle_after, until stop is closed. Each host is checked every
// idle_after/3 (at most every 5 s). Activity is written only when it is
// ActivityGap later than the one recorded (watch.Scaler), so the checks
// mostly cost nothing. The API calls are cancelled when stop is closed
// (Shutdown) and the idler returns only once they have.
func (p *Proxy) idler(stop <-chan struct{}) {
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
	state := make(map[string]*idleState) // by host, so it survives reloads
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if p.opts.Scaler == nil {
				continue
			}
			seen := make(map[string]bool)
			var g errgroup.Group
			g.SetLimit(idleParallel)
			for host, r := range p.routes.Load().byHost {
				if !r.svc.IdleAfter.Set {
					continue
				}
				seen[host] = true
				st := state[host]
				if st == nil {
					st = &idleState{requests: r.m.requests.Get(), lastCheck: now}
					state[host] = st
					continue
				}
				if now.Sub(st.lastCheck) < min(5*time.Second, r.svc.IdleAfter.Duration/3) {
					continue
				}
				st.lastCheck = now
				g.Go(func() error {
					p.idleCheck(ctx, r, st, now)
					return nil
				})
			}
			_ = g.Wait()
			for host := range state {
				if !seen[host] {
					delete(state, host)
				}
			}
		}
	}
}

// idleCheck records r's activity, or scales it down if it had none. Its
// calls end at idleCallTimeout or with parent, whichever is first.
func (p *Proxy) idleCheck(parent context.Context, r *route, st *idleState, now time.Time) {
	ctx, cancel := context.WithTimeout(parent, idleCallTimeout)
	defer cancel()
	w := workloadOf(r.svc)
	n := r.m.requests.Get()
	if r.m.active.Get() > 0 || n != st.requests {
		st.requests = n
		if err := p.opts.Scaler.RecordActivity(ctx, w, now, r.svc.IdleAfter.Duration); err != nil && parent.Err() == nil {
			p.log.Warn().Err(err).Str("host", r.host).Msg("record activity failed")
		}
		return
	}
	if _, err := p.opts.Scaler.ScaleDownIfIdle(ctx, w, r.svc.IdleAfter.Duration, now); err != nil && parent.Err() == nil {
		p.log.Warn().Err(err).Str("host", r.host).Msg("idle scale-down failed")
	}
}
