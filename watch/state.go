// Package watch tells the proxy, from Kubernetes informers, which services
// have ready endpoints and where they are. Each configured service has an
// immutable State behind an atomic pointer; every change swaps in a new
// State and closes the old one's channel, which wakes every request parked
// on that service at once (issue 2: released the instant readiness flips,
// not on a poll).
package watch

import (
	"slices"
	"sync/atomic"
)

// Key identifies a configured upstream: a Service port in a namespace.
type Key struct {
	Namespace string
	Service   string
	Port      int32
}

// State is one immutable readiness snapshot of a service.
type State struct {
	// Ready reports whether at least one endpoint on the port is ready
	// and not terminating.
	Ready bool
	// Addrs are the ready endpoints as "ip:port", sorted, deduplicated.
	Addrs []string
	// AppProtocol is the appProtocol of the EndpointSlice port serving
	// the service's port ("" if unset): "kubernetes.io/h2c" asks for
	// HTTP/2 with prior knowledge towards the endpoints (KEP-3726).
	AppProtocol string

	changed chan struct{} // closed when this State is replaced
}

// Changed is closed when a newer State replaces this one. A waiter loads
// the State, checks it, then waits on Changed: no change can slip between.
func (s *State) Changed() <-chan struct{} { return s.changed }

// Service is the live readiness of one Key.
type Service struct {
	key   Key
	state atomic.Pointer[State]
}

func newService(k Key) *Service {
	s := &Service{key: k}
	s.state.Store(&State{changed: make(chan struct{})})
	return s
}

// Key returns the service's key.
func (s *Service) Key() Key { return s.key }

// State returns the current snapshot. It never returns nil.
func (s *Service) State() *State { return s.state.Load() }

// set publishes a new snapshot if it differs from the current one and
// reports whether it did. Callers serialise calls to set (Watcher.mu).
func (s *Service) set(ready bool, addrs []string, appProto string) bool {
	old := s.state.Load()
	if old.Ready == ready && slices.Equal(old.Addrs, addrs) && old.AppProtocol == appProto {
		return false
	}
	s.state.Store(&State{Ready: ready, Addrs: addrs, AppProtocol: appProto, changed: make(chan struct{})})
	close(old.changed)
	return true
}
