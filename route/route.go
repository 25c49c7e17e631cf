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
	"strconv"
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
	Host string
	Svc  conf.Service
	// Ready is the service's readiness; nil for a route that answers
	// itself with no backend (AnswersItself).
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
	name     string // routeName
}

// Name names the route in access log lines: its host for a TOML entry;
// for one from the cluster, its source and backend ("HTTPRoute ns/name
// ns/service:80"), or its fixed status or "redirect".
func (r *Route) Name() string { return r.name }

// Build makes the table of cfg (already validated), with each service's
// readiness from r and its series in set. Entries that share a non-empty
// conf.Extras.Rule become one rule with weighted backends.
func Build(cfg *conf.Config, r Readiness, set *metrics.Set) (*Table, error) {
	t := &Table{hosts: make(map[string][]Rule, len(cfg.Services)), routes: make([]*Route, 0, len(cfg.Services))}
	// weighted holds, per host and Rule, the index of each of its rules in
	// t.hosts[host] (one per path), for its later backends.
	weighted := make(map[[2]string][]int)
	for _, s := range cfg.Services {
		var ws *watch.Service
		if k := keyOf(&s); k != nil {
			if ws = r.Service(*k); ws == nil {
				return nil, fmt.Errorf("route %s: no readiness watch for %s/%s:%d", s.Host, k.Namespace, k.Service, k.Port)
			}
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
			name:            routeName(&s),
		}
		t.routes = append(t.routes, rt)
		if s.Rule != "" {
			if at, ok := weighted[[2]string{s.Host, s.Rule}]; ok {
				for _, i := range at {
					rule := &t.hosts[s.Host][i]
					rule.Backends = append(rule.Backends, Backend{Route: rt, Weight: s.Weight})
				}
				continue
			}
		}
		m, err := extraMatch(&s)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", s.Host, err)
		}
		paths := s.Paths
		var at []int
		add := func(m Match) {
			rule := Rule{Match: m, Route: rt, created: s.Created, deep: s.DeepWildcard && strings.HasPrefix(s.Host, "*.")}
			if s.Rule != "" {
				rule.Backends = []Backend{{Route: rt, Weight: s.Weight}}
			}
			at = append(at, len(t.hosts[s.Host]))
			t.hosts[s.Host] = append(t.hosts[s.Host], rule)
		}
		for _, p := range s.ExactPaths {
			m.PathExact, m.PathPrefix = p, ""
			add(m)
		}
		if len(paths) == 0 && len(s.ExactPaths) == 0 {
			paths = conf.DefaultPaths // a config not through Validate (tests)
		}
		for _, p := range paths {
			m.PathExact, m.PathPrefix = "", p
			add(m)
		}
		if s.Rule != "" {
			weighted[[2]string{s.Host, s.Rule}] = at
		}
	}
	for _, rules := range t.hosts {
		for i := range rules {
			if rules[i].Backends != nil {
				rules[i].weigh(set)
			}
		}
		sortRules(rules)
	}
	return t, nil
}

// keyOf is the readiness key of s, nil for an entry without a backend
// (conf.Extras.AnswersItself with no service).
func keyOf(s *conf.Service) *watch.Key {
	if s.ServiceName == "" && s.AnswersItself() {
		return nil
	}
	return &watch.Key{Namespace: s.Namespace, Service: s.ServiceName, Port: int32(s.ServicePort)}
}

// routeName names a route in access log lines: the host of a TOML entry,
// as always; for a route from the cluster, its source and backend, so
// that a weighted pick shows which backend took the request.
func routeName(s *conf.Service) string {
	switch {
	case s.Source == "":
		return s.Host
	case s.Fixed != 0:
		return s.Source + " " + strconv.Itoa(s.Fixed)
	case s.Filters != nil && s.Filters.Redirect != nil:
		return s.Source + " redirect"
	}
	return s.Source + " " + s.Namespace + "/" + s.ServiceName + ":" + strconv.Itoa(s.ServicePort)
}

// CarryOver keeps in t the routes of old whose service entry is unchanged,
// with their parked requests, counters and learned cold starts (issue 7).
// An entry is found by its host and paths, and kept only if the rest of
// it is equal too; of equal entries (two backendRefs alike), each old
// route is kept once.
func (t *Table) CarryOver(old *Table) {
	prev := make(map[string][]*Route, len(old.routes))
	for _, r := range old.routes {
		prev[entryKey(&r.Svc)] = append(prev[entryKey(&r.Svc)], r)
	}
	kept := make(map[*Route]*Route)
	taken := make(map[*Route]bool)
	for i, r := range t.routes {
		for _, p := range prev[entryKey(&r.Svc)] {
			if !taken[p] && reflect.DeepEqual(p.Svc, r.Svc) {
				kept[r], taken[p] = p, true
				t.routes[i] = p
				break
			}
		}
	}
	for _, rules := range t.hosts {
		for i := range rules {
			rule := &rules[i]
			if p := kept[rule.Route]; p != nil {
				rule.Route = p
			}
			for j := range rule.Backends {
				if p := kept[rule.Backends[j].Route]; p != nil {
					rule.Backends[j].Route = p
				}
			}
			if rule.pick != nil {
				rule.pick.replace(kept)
			}
		}
	}
}

// entryKey identifies a [[services]] entry across reloads, with the
// extras that tell apart the cluster's entries of one host and path.
func entryKey(s *conf.Service) string {
	return s.Host + " " + strings.Join(s.Paths, " ") + " =" + strings.Join(s.ExactPaths, " =") + " " + s.Source + " " + s.Rule
}

// Len is the number of routes.
func (t *Table) Len() int { return len(t.routes) }

// All lists every route once, in config order, for those that visit every
// one (the idler).
func (t *Table) All() []*Route { return t.routes }

// Keys lists the readiness keys cfg needs, for watch.New.
func Keys(cfg *conf.Config) []watch.Key {
	keys := make([]watch.Key, 0, len(cfg.Services))
	for i := range cfg.Services {
		if k := keyOf(&cfg.Services[i]); k != nil {
			keys = append(keys, *k)
		}
	}
	return keys
}

// Lookup finds the route for a request by the host it is for (see
// Authority), its raw path (see Path) and, for rules that match more than
// the path, req (rules.go; nil: a request with no method, header or
// query). The rules of the exact host are tried first, then those of the
// wildcard "*.example.com" for "app.example.com", each in their order
// (rules.go): a request the exact host's rules do not accept may still be
// the wildcard's, as Gateway API orders hostnames before paths; last those
// of the catch-all host "*" (conf.CatchAllHost). A weighted rule picks
// one of its routes (weights.go). The route may answer itself
// (AnswersItself). It returns status 400 for a missing or invalid host and
// 404 when no rule accepts the request, whether or not some service
// claims the host (issue 2). It does not allocate.
func (t *Table) Lookup(host, path []byte, req Request) (*Route, int) {
	var buf [128]byte
	key, ok := conf.AppendHost(buf[:0], host)
	if !ok {
		return nil, http.StatusBadRequest
	}
	// The string conversions in map indexes do not allocate.
	if r := first(t.hosts[string(key)], path, req); r != nil {
		return r, 0
	}
	if i := bytes.IndexByte(key, '.'); i > 0 {
		key[i-1] = '*'
		if r := first(t.hosts[string(key[i-1:])], path, req); r != nil {
			return r, 0
		}
		// Then the wildcards further up, the most specific first, for the
		// rules whose wildcard reaches that deep (Gateway API hostnames:
		// "*.example.com" matches "a.b.example.com"). A wildcard keeps at
		// least two labels ("*.com" is no host).
		for rest := key[i+1:]; ; {
			j := bytes.IndexByte(rest, '.')
			if j < 0 || bytes.IndexByte(rest[j+1:], '.') < 0 {
				break
			}
			rest = rest[j+1:]
			w := key[len(key)-len(rest)-2:]
			w[0], w[1] = '*', '.'
			if r := firstOf(t.hosts[string(w)], path, req, true); r != nil {
				return r, 0
			}
		}
	}
	// Last, the catch-all entry (an Ingress's defaultBackend), if any.
	if r := first(t.hosts[conf.CatchAllHost], path, req); r != nil {
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
	if len(rules) != 1 || rules[0].Route == nil || !rules[0].Route.Svc.TLSPassthrough {
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
