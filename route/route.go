// Package route is Agimo's routing table: the configured services as the
// request path needs them, looked up by the host a request is for and then
// by its path (rules.go). A Table is an immutable snapshot, swapped whole
// on reload, so every front end (HTTP/1.1, HTTP/2, TLS passthrough) reads
// it without a lock. A Route also carries the little state a service
// accumulates across requests: its parked count, its endpoint cursor, its
// request counts and its cold starts (cold.go).
package route

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"reflect"
	"strings"
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

// Table is an immutable routing snapshot: swapped whole, never mutated
// once published.
type Table struct {
	// hosts holds the rules of each host, exact ("app.example.com") or
	// wildcard ("*.example.com"), in the order they are tried (rules.go).
	hosts map[string][]Rule
	// routes lists every route once, in config order.
	routes []*Route
}

// Route is one configured service ([[services]] entry) as the request
// path needs it. Several routes may share a host (different paths); they
// then share its series M too, which keep the host label only.
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
	cs      atomic.Pointer[ColdStart]    // the cold start under way, if any
	history atomic.Pointer[[]ColdRecord] // the last cold starts, newest first
	// requests and active are this route's own share of M.Requests and
	// M.Active, for the idler: two routes of one host may scale different
	// workloads, and the host's series cannot tell their activity apart.
	requests atomic.Uint64
	active   atomic.Int64
}

// Build makes the table of cfg (already validated), with each service's
// readiness from r and its series in set.
func Build(cfg *conf.Config, r Readiness, set *metrics.Set) (*Table, error) {
	t := &Table{hosts: make(map[string][]Rule, len(cfg.Services)), routes: make([]*Route, 0, len(cfg.Services))}
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
		rt := &Route{
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
		t.routes = append(t.routes, rt)
		paths := s.Paths
		for _, p := range s.ExactPaths {
			t.hosts[s.Host] = append(t.hosts[s.Host], Rule{Match: Match{PathExact: p}, Route: rt})
		}
		if len(paths) == 0 && len(s.ExactPaths) == 0 {
			paths = conf.DefaultPaths // a config not through Validate (tests)
		}
		for _, p := range paths {
			t.hosts[s.Host] = append(t.hosts[s.Host], Rule{Match: Match{PathPrefix: p}, Route: rt})
		}
	}
	for _, rules := range t.hosts {
		sortRules(rules)
	}
	return t, nil
}

// CarryOver keeps in t the routes of old whose service entry is unchanged,
// with their parked requests, counters and learned cold starts (issue 7).
// An entry is known by its host and paths, which no other entry of a valid
// config shares; the rest of it must be equal too.
func (t *Table) CarryOver(old *Table) {
	prev := make(map[string]*Route, len(old.routes))
	for _, r := range old.routes {
		prev[entryKey(&r.Svc)] = r
	}
	kept := make(map[*Route]*Route)
	for i, r := range t.routes {
		if p := prev[entryKey(&r.Svc)]; p != nil && reflect.DeepEqual(p.Svc, r.Svc) {
			kept[r] = p
			t.routes[i] = p
		}
	}
	for _, rules := range t.hosts {
		for i := range rules {
			if p := kept[rules[i].Route]; p != nil {
				rules[i].Route = p
			}
		}
	}
}

// entryKey identifies a [[services]] entry across reloads.
func entryKey(s *conf.Service) string {
	return s.Host + " " + strings.Join(s.Paths, " ") + " =" + strings.Join(s.ExactPaths, " =")
}

// Len is the number of routes.
func (t *Table) Len() int { return len(t.routes) }

// All lists every route once, in config order, for those that visit every
// one (the idler).
func (t *Table) All() []*Route { return t.routes }

// Keys lists the readiness keys cfg needs, for watch.New.
func Keys(cfg *conf.Config) []watch.Key {
	keys := make([]watch.Key, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		keys = append(keys, watch.Key{Namespace: s.Namespace, Service: s.ServiceName, Port: int32(s.ServicePort)})
	}
	return keys
}

// Lookup finds the route for a request by the host it is for (see
// Authority) and its raw path (see Path). The rules of the exact host are
// tried first, then those of the wildcard "*.example.com" for
// "app.example.com", each in their order (rules.go): a path the exact
// host's rules do not accept may still be the wildcard's, as Gateway API
// orders hostnames before paths; last those of the catch-all host "*"
// (conf.CatchAllHost). It returns status 400 for a missing or
// invalid host and 404 when no rule accepts the request, whether or not
// some service claims the host (issue 2). It does not allocate.
func (t *Table) Lookup(host, path []byte) (*Route, int) {
	var buf [128]byte
	key, ok := conf.AppendHost(buf[:0], host)
	if !ok {
		return nil, http.StatusBadRequest
	}
	// The string conversions in map indexes do not allocate.
	if r := first(t.hosts[string(key)], path); r != nil {
		return r, 0
	}
	if i := bytes.IndexByte(key, '.'); i > 0 {
		key[i-1] = '*'
		if r := first(t.hosts[string(key[i-1:])], path); r != nil {
			return r, 0
		}
	}
	// Last, the catch-all entry (an Ingress's defaultBackend), if any.
	if r := first(t.hosts[conf.CatchAllHost], path); r != nil {
		return r, 0
	}
	return nil, http.StatusNotFound
}

// Passthrough returns the tls_passthrough route for a TLS connection's
// SNI, or nil. Passthrough is decided by host alone (the path is inside
// the encryption): the exact host if any entry claims it, else the
// wildcard; conf makes a passthrough entry the only one of its host, with
// the path "/".
func (t *Table) Passthrough(sni []byte) *Route {
	var buf [128]byte
	key, ok := conf.AppendHost(buf[:0], sni)
	if !ok {
		return nil
	}
	rules := t.hosts[string(key)]
	if rules == nil {
		if i := bytes.IndexByte(key, '.'); i > 0 {
			key[i-1] = '*'
			rules = t.hosts[string(key[i-1:])]
		}
	}
	if len(rules) != 1 || !rules[0].Route.Svc.TLSPassthrough {
		return nil
	}
	return rules[0].Route
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

// Parked is the number of requests parked on the route now.
func (r *Route) Parked() int64 { return r.parked.Load() }

// Unpark ends the count of one parked request.
func (r *Route) Unpark() {
	r.parked.Add(-1)
	r.M.Parked.Dec()
}

// CountRequest counts a request the route serves, in agimo_requests_total
// and agimo_active_requests of its host and in the route's own counts
// (Activity); EndRequest ends it, once, when the request (or its tunnel
// or streamed body) is over.
func (r *Route) CountRequest() {
	r.M.Requests.Inc()
	r.M.Active.Inc()
	r.requests.Add(1)
	r.active.Add(1)
}

// EndRequest ends a request CountRequest counted.
func (r *Route) EndRequest() {
	r.active.Add(-1)
	r.M.Active.Dec()
}

// Activity returns the number of requests the route has counted and how
// many of them are not over, for the idler.
func (r *Route) Activity() (requests uint64, active int64) {
	return r.requests.Load(), r.active.Load()
}
