// Package park holds requests for a service that has no ready endpoint
// until it has one, its timeout passes, the client leaves or Agimo stops.
// Every parked request is released by the service's broadcast channel
// (watch.State.Changed), closed by the one informer that saw readiness
// flip: no polling (issue 2). Wait parks on the caller's goroutine (an
// HTTP/2 stream, an HTTP/1.1 request with a body); the Lot parks a whole
// connection without a goroutine (lot.go).
package park

import (
	"errors"
	"time"

	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/scale"
	"github.com/agimo/agimo/watch"
)

// Why a park ended without readiness.
var (
	ErrTimeout    = errors.New("service not ready before timeout")
	ErrClientGone = errors.New("client closed the connection")
	ErrStopping   = errors.New("proxy is shutting down")
	ErrFull       = errors.New("too many parked requests")
)

// Waiter parks requests on their own goroutine.
type Waiter struct {
	// Begin is called for each request that parks (scale.Policy.Begin).
	Begin func(*route.Route, scale.WakeHook)
	// Stopping is closed when Agimo shuts down: parks end with ErrStopping.
	Stopping <-chan struct{}
}

// Wait waits until r's service is ready, the deadline passes, gone is
// closed (the client left; nil if it cannot tell) or Stopping is closed.
// A request past r's max_parked gets ErrFull at once. hook (nil: none)
// hears of the wake-up if this request starts it.
func (w *Waiter) Wait(r *route.Route, deadline time.Time, gone <-chan struct{}, hook scale.WakeHook) (*watch.State, error) {
	if !r.TryPark() {
		return nil, ErrFull
	}
	defer r.Unpark()
	w.Begin(r, hook)
	start := time.Now()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	st := r.Ready.State()
	for !st.Ready {
		select {
		case <-st.Changed():
			st = r.Ready.State()
		case <-timer.C:
			return nil, ErrTimeout
		case <-gone:
			return nil, ErrClientGone
		case <-w.Stopping:
			return nil, ErrStopping
		}
	}
	r.Released(start)
	return st, nil
}
