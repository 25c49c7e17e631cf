// Package core is the state every front end shares: the routing table
// (swapped whole on reload), the upstream pools, the park (Waiter and Lot)
// and the scaling policy, with the goroutines that tend them. Each front
// end (HTTP/1.1 in package proxy, HTTP/2 in package h2) is an adapter that
// turns its protocol's requests into calls on these; none holds a copy.
package core

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/scale"
	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/upstream"
	"github.com/agimo/agimo/watch"
)

// Options configure a Core beyond its config file.
type Options struct {
	Log     zerolog.Logger
	Metrics *metrics.Set
	// RetryAfter is the Retry-After value, in seconds, of 503 answers.
	RetryAfter int
	// TrustForwarded keeps the client's X-Forwarded-* headers and appends
	// to X-Forwarded-For, for when Agimo sits behind a trusted proxy. By
	// default they are replaced, so a client cannot spoof its address.
	TrustForwarded bool
	// Scaler wakes and idles workloads (wake, idle_after); nil disables both.
	Scaler scale.Scaler
	// AccessLog gets a line per request from every front end; nil: off.
	AccessLog *accesslog.Logger
	// Tracer starts every front end's request spans; nil: off.
	Tracer *tracing.Tracer
}

// Core is the shared state. Create it with New; Stop starts the shutdown
// (parked requests answer 503); Close waits for everything it started.
type Core struct {
	Log     zerolog.Logger
	Metrics *metrics.Set
	Opts    Options
	Pools   *upstream.Pools
	H2C     *upstream.H2C
	Policy  *scale.Policy
	Waiter  *park.Waiter
	Lot     *park.Lot
	// AccessLog is Opts.AccessLog (nil: off); its owner closes it.
	AccessLog *accesslog.Logger
	// Tracer is Opts.Tracer (nil: off); its owner shuts it down.
	Tracer *tracing.Tracer

	// replaceIDs is request_id = "replace", swapped on reload.
	replaceIDs atomic.Bool
	routes     atomic.Pointer[route.Table]
	ready      route.Readiness
	stopping   chan struct{}
	stopOnce   sync.Once
	wg         sync.WaitGroup // the pools' janitor and the idler
}

// New builds the core for cfg (already validated) with readiness from r,
// and starts the pools' janitor and the idler.
func New(cfg *conf.Config, r route.Readiness, opts Options) (*Core, error) {
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5
	}
	c := &Core{Log: opts.Log, Metrics: opts.Metrics, Opts: opts, ready: r, stopping: make(chan struct{}),
		AccessLog: opts.AccessLog, Tracer: opts.Tracer}
	c.replaceIDs.Store(cfg.RequestID == conf.RequestIDReplace)
	t, err := route.Build(cfg, r, opts.Metrics)
	if err != nil {
		return nil, err
	}
	c.routes.Store(t)
	c.Pools = upstream.NewPools(opts.Log)
	c.H2C = upstream.NewH2C()
	c.Policy = scale.New(opts.Scaler, opts.Log, c.stopping)
	c.Waiter = &park.Waiter{Begin: c.Policy.Begin, Stopping: c.stopping}
	if c.Lot, err = park.NewLot(c.stopping); err != nil {
		return nil, fmt.Errorf("parking lot: %w", err)
	}
	c.wg.Go(func() { c.Pools.Janitor(c.stopping) })
	c.wg.Go(func() { c.Policy.Idle(c.stopping, c.Routes) })
	return c, nil
}

// Routes returns the routing table now in force.
func (c *Core) Routes() *route.Table { return c.routes.Load() }

// TrustRequestID reports whether a client's well-formed X-Request-Id is
// kept (request_id = "trust", the default) rather than replaced.
func (c *Core) TrustRequestID() bool { return !c.replaceIDs.Load() }

// Stopping is closed once Stop is called.
func (c *Core) Stopping() <-chan struct{} { return c.stopping }

// Stop starts the shutdown: parked requests answer 503, the idler and
// wake-ups end. It may be called more than once.
func (c *Core) Stop() { c.stopOnce.Do(func() { close(c.stopping) }) }

// Close stops the core and waits for its goroutines and the lot's, or
// until ctx is done; then closes the pools' idle connections. Call it
// after the front ends have shut down.
func (c *Core) Close(ctx context.Context) error {
	c.Stop()
	c.wg.Wait()
	c.Policy.Wait()
	var err error
	lotDone := make(chan struct{})
	go func() { c.Lot.Close(); close(lotDone) }()
	select {
	case <-lotDone:
	case <-ctx.Done():
		err = fmt.Errorf("close parking lot: %w", ctx.Err())
	}
	c.Pools.CloseAll()
	c.H2C.CloseIdle()
	return err
}

// KeyUpdater is the part of watch.Watcher a reload needs.
type KeyUpdater interface {
	Update(ctx context.Context, keys []watch.Key) error
}

// Reload switches to cfg (already validated) without dropping a request
// (issue 7): readiness starts following the new services first, then the
// routing table is swapped in one step. Routes whose service is unchanged
// carry over as they are, with their parked requests, counters and learned
// cold starts; requests parked on a removed route keep waiting on it until
// released or timed out. Listener settings (limits, header timeout) take
// effect at the next restart.
func (c *Core) Reload(ctx context.Context, cfg *conf.Config, u KeyUpdater) error {
	if err := u.Update(ctx, route.Keys(cfg)); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	t, err := route.Build(cfg, c.ready, c.Metrics)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	t.CarryOver(c.routes.Load())
	c.routes.Store(t)
	c.replaceIDs.Store(cfg.RequestID == conf.RequestIDReplace)
	c.Log.Info().Int("services", t.Len()).Msg("config reloaded")
	return nil
}
