// Package route is Agimo's routing table: the configured services as the
// request path needs them, looked up by the host a request is for. A
// Table is an immutable snapshot, swapped whole on reload, so every front
// end (HTTP/1.1, HTTP/2) reads it without a lock. A Route also carries the
// little state a service accumulates across requests: its parked count,
// its endpoint cursor and its cold starts (cold.go).
package route

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/watch"
)

// Readiness is what routing needs from package watch.
type Readiness interface {
	Service(watch.Key) *watch.Service
}

// Table is an immutable routing snapshot: swapped whole, never mutated.
type Table struct {
	byHost map[string]*Route
}

// Route is one configured service as the request path needs it.
type Route struct {
	Host            string
	Svc             conf.Service
	Ready           *watch.Service
	Timeout         time.Duration
	UpstreamTimeout time.Duration
	// BodyTimeout and SendTimeout are client_body_timeout and send_timeout.
	BodyTimeout, SendTimeout time.Duration
	// Target is a fixed upstream address (address override or dial =
	// "service"); "" sends requests to ready endpoints.
	Target    string
	M         *stats.Host
	MaxParked int64

	next   atomic.Uint32 // round-robin cursor over ready endpoints
	parked atomic.Int64  // parked requests, against MaxParked
	// waiting is the waiting page, nil if the service has none.
	waiting *template.Template
	cold    coldStarts
	cs      atomic.Pointer[ColdStart] // the cold start under way, if any
}

// Build makes the table of cfg (already validated), with each service's
// readiness from r and its series in set.
func Build(cfg *conf.Config, r Readiness, set *metrics.Set) (*Table, error) {
	t := &Table{byHost: make(map[string]*Route, len(cfg.Services))}
	for _, s := range cfg.Services {
		k := watch.Key{Namespace: s.Namespace, Service: s.ServiceName, Port: int32(s.ServicePort)}
		ws := r.Service(k)
		if ws == nil {
			return nil, fmt.Errorf("route %s: no readiness watch for %s/%s:%d", s.Host, k.Namespace, k.Service, k.Port)
		}
		var waiting *template.Template
		if s.WaitingPage {
			var err error
			if waiting, err = parseWaitingPage(s.WaitingPageTemplate); err != nil {
				return nil, fmt.Errorf("route %s: waiting page: %w", s.Host, err)
			}
		}
		t.byHost[s.Host] = &Route{
			waiting:         waiting,
			Host:            s.Host,
			Svc:             s,
			Ready:           ws,
			Timeout:         s.Timeout.Duration,
			UpstreamTimeout: s.UpstreamTimeout.Duration,
			BodyTimeout:     s.ClientBodyTimeout.Duration,
			SendTimeout:     s.SendTimeout.Duration,
			Target:          s.TargetAddr(),
			MaxParked:       int64(s.MaxParked),
			M:               stats.NewHost(set, s.Host),
		}
	}
	return t, nil
}

// CarryOver keeps in t the routes of old whose service is unchanged, with
// their parked requests, counters and learned cold starts (issue 7).
func (t *Table) CarryOver(old *Table) {
	for host, r := range t.byHost {
		if prev := old.byHost[host]; prev != nil && reflect.DeepEqual(prev.Svc, r.Svc) {
			t.byHost[host] = prev
		}
	}
}

// Len is the number of routes.
func (t *Table) Len() int { return len(t.byHost) }

// All lists the routes by host, for those that visit every one (the idler).
func (t *Table) All() map[string]*Route { return t.byHost }

// Keys lists the readiness keys cfg needs, for watch.New.
func Keys(cfg *conf.Config) []watch.Key {
	keys := make([]watch.Key, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		keys = append(keys, watch.Key{Namespace: s.Namespace, Service: s.ServiceName, Port: int32(s.ServicePort)})
	}
	return keys
}

// Lookup finds the route for the host a request is for (see Authority).
// It returns status 400 for a missing or invalid host and 404 for a host
// no service claims (issue 2).
func (t *Table) Lookup(host []byte) (*Route, int) {
	var buf [128]byte
	key, ok := conf.AppendHost(buf[:0], host)
	if !ok {
		return nil, http.StatusBadRequest
	}
	// The string conversions in map indexes do not allocate.
	if r := t.byHost[string(key)]; r != nil {
		return r, 0
	}
	// Then a wildcard: "*.example.com" for "app.example.com".
	if i := bytes.IndexByte(key, '.'); i > 0 {
		key[i-1] = '*'
		if r := t.byHost[string(key[i-1:])]; r != nil {
			return r, 0
		}
	}
	return nil, http.StatusNotFound
}

// Pick returns the address to send a request to: the fixed target, or the
// next of st's ready endpoints in turn.
func (r *Route) Pick(st *watch.State) string {
	if r.Target != "" {
		return r.Target
	}
	return st.Addrs[int(r.next.Add(1)-1)%len(st.Addrs)]
}

// TryPark counts one more parked request, unless MaxParked are parked
// already; Unpark ends the count. Both keep agimo_parked_requests.
func (r *Route) TryPark() bool {
	if r.parked.Add(1) > r.MaxParked {
		r.parked.Add(-1)
		return false
	}
	r.M.Parked.Inc()
	return true
}

// Unpark ends the count of one parked request.
func (r *Route) Unpark() {
	r.parked.Add(-1)
	r.M.Parked.Dec()
}
