// Package scale is Agimo's scaling policy, beside package watch's Scaler,
// which does the API calls: wake = true raises a workload from zero when
// a request parks on it, once per cold start; idle_after records each
// workload's activity and scales it to zero once it has had none for
// that long (issue 7). Both front ends call Begin when they park a
// request.
package scale

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/watch"
)

// Scaler changes workloads' replicas (watch.Scaler), for wake = true and
// idle_after (issue 7).
type Scaler interface {
	WakeUp(ctx context.Context, w watch.Workload, replicas int32) (bool, error)
	RecordActivity(ctx context.Context, w watch.Workload, at time.Time, idle time.Duration) error
	ScaleDownIfIdle(ctx context.Context, w watch.Workload, idle time.Duration, now time.Time) (bool, error)
}

// Policy wakes and idles workloads. Its calls end when stop is closed,
// and Wait returns once every one it started has.
type Policy struct {
	scaler Scaler // nil disables wake and idle
	log    zerolog.Logger
	stop   <-chan struct{}
	bg     sync.WaitGroup // wake-up calls in flight

	mu    sync.Mutex // guards works
	works map[watch.Workload]WorkloadState
}

// New returns the policy for scaler (nil: none), whose calls end when
// stop is closed.
func New(scaler Scaler, log zerolog.Logger, stop <-chan struct{}) *Policy {
	return &Policy{scaler: scaler, log: log, stop: stop}
}

// Wait waits for the wake-up calls in flight.
func (p *Policy) Wait() { p.bg.Wait() }

// WakeHook is told of the wake-up a request started (the request's
// trace, tracing.Request): when the scaler's calls began and ended,
// whether they scaled the workload from zero, and their error.
type WakeHook interface {
	Wake(start, end time.Time, scaled bool, err error)
}

// Begin notes a request parking on r: the first one starts a cold start,
// and with wake = true, raises the workload from zero once. hook, if not
// nil, hears of the wake-up if this request started it.
func (p *Policy) Begin(r *route.Route, hook WakeHook) {
	cs := r.BeginCold()
	if !r.Svc.Wake || p.scaler == nil || !cs.Waking.CompareAndSwap(false, true) {
		return
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		go func() {
			select {
			case <-p.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		w := workloadOf(r.Svc)
		// The wake is activity: record it before scaling up. Another replica,
		// which saw none of the parked requests, would otherwise find the Lease
		// as old as the time spent at zero and scale the woken workload back
		// down before this replica's next idle check records them (issue 15).
		// Its scale-down reads the scale, then the Lease: once it sees the
		// replicas, it sees this activity too.
		if r.Svc.IdleAfter.Set {
			// Bounded apart: a slow Lease write must leave the wake its time.
			rctx, rcancel := context.WithTimeout(ctx, idleCallTimeout)
			if err := p.scaler.RecordActivity(rctx, w, time.Now(), r.Svc.IdleAfter.Duration); err != nil {
				p.log.Warn().Err(err).Str("host", r.Host).Msg("record activity before wake up failed")
			}
			rcancel()
		}
		scaled, err := p.scaler.WakeUp(ctx, w, int32(r.Svc.MinReplicas))
		if hook != nil {
			hook.Wake(start, time.Now(), scaled, err)
		}
		switch {
		case err != nil:
			p.note(w, func(s *WorkloadState) { s.WakeError = err.Error() })
			p.log.Warn().Err(err).Str("host", r.Host).Msg("wake up failed; waiting for another scaler")
			r.M.WakeErrors.Inc()
			cs.Waking.Store(false) // let the next parked request try again
		case scaled:
			p.note(w, func(s *WorkloadState) { s.LastWake, s.WakeError = time.Now(), "" })
			r.M.Wakes.Inc()
			r.Scaled(cs)
		}
	}()
}

func workloadOf(s conf.Service) watch.Workload {
	return watch.Workload{Kind: s.Type, Namespace: s.Namespace, Name: s.Name}
}
