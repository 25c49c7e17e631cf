package scale

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agimo/agimo/route"
)

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

// Idle records activity and scales idle workloads to zero for every
// route with idle_after, until stop is closed. Each host is checked every
// idle_after/3 (at most every 5 s). Activity is written only when it is
// ActivityGap later than the one recorded (watch.Scaler), so the checks
// mostly cost nothing. The API calls are cancelled when stop is closed
// (Shutdown) and the idler returns only once they have.
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
	state := make(map[string]*idleState) // by host, so it survives reloads
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if p.scaler == nil {
				continue
			}
			seen := make(map[string]bool)
			var g errgroup.Group
			g.SetLimit(idleParallel)
			for host, r := range routes().All() {
				if !r.Svc.IdleAfter.Set {
					continue
				}
				seen[host] = true
				st := state[host]
				if st == nil {
					st = &idleState{requests: r.M.Requests.Get(), lastCheck: now}
					state[host] = st
					continue
				}
				if now.Sub(st.lastCheck) < min(5*time.Second, r.Svc.IdleAfter.Duration/3) {
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
func (p *Policy) idleCheck(parent context.Context, r *route.Route, st *idleState, now time.Time) {
	ctx, cancel := context.WithTimeout(parent, idleCallTimeout)
	defer cancel()
	w := workloadOf(r.Svc)
	n := r.M.Requests.Get()
	if r.M.Active.Get() > 0 || n != st.requests {
		st.requests = n
		if err := p.scaler.RecordActivity(ctx, w, now, r.Svc.IdleAfter.Duration); err != nil && parent.Err() == nil {
			p.log.Warn().Err(err).Str("host", r.Host).Msg("record activity failed")
		}
		return
	}
	if _, err := p.scaler.ScaleDownIfIdle(ctx, w, r.Svc.IdleAfter.Duration, now); err != nil && parent.Err() == nil {
		p.log.Warn().Err(err).Str("host", r.Host).Msg("idle scale-down failed")
	}
}
