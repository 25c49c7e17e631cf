package core

import (
	"time"

	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/upstream"
	"github.com/agimo/agimo/watch"
)

// Attempt calls try with the address of one of r's ready endpoints (st's,
// round robin) until try succeeds or fails with anything but a refused
// connection. An endpoint just announced ready may not listen yet, and
// one being removed may already be gone: a refused connection, which
// sent nothing, is retried (another endpoint, or this one after a short
// pause) until deadline rather than answered 502 (issue 2). If the
// service is no longer ready, repark parks the request again. It returns
// try's last error, park.ErrTimeout past the deadline, or repark's error.
func (c *Core) Attempt(r *route.Route, st *watch.State, deadline time.Time,
	repark func() (*watch.State, error), try func(addr string) error) error {
	for attempt := 0; ; attempt++ {
		addr := r.Pick(st)
		err := try(addr)
		if err == nil || !upstream.IsRefused(err) {
			return err
		}
		r.M.Errs[stats.UpstreamRefused].Inc()
		c.Log.Debug().Str("host", r.Host).Str("upstream", addr).Err(err).Msg("connection refused; retrying")
		if st, err = c.awaitRetry(r, attempt, deadline, repark); err != nil {
			return err
		}
	}
}

// awaitRetry pauses before the next attempt after a refused connection,
// waking early if readiness changes. If the service is no longer ready it
// parks again. It returns the state to use, or an error once the deadline
// has passed, the client left or the proxy is stopping.
func (c *Core) awaitRetry(r *route.Route, attempt int, deadline time.Time, repark func() (*watch.State, error)) (*watch.State, error) {
	st := r.Ready.State()
	if !st.Ready {
		return repark()
	}
	if attempt < len(st.Addrs)-1 && r.Target == "" {
		return st, nil // try the next endpoint at once
	}
	wait := min(10*time.Millisecond<<min(attempt, 5), 250*time.Millisecond, time.Until(deadline))
	if wait <= 0 {
		return nil, park.ErrTimeout
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-st.Changed():
	case <-c.stopping:
		return nil, park.ErrStopping
	}
	if st = r.Ready.State(); !st.Ready {
		return repark()
	}
	return st, nil
}
