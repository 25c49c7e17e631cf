// Package status is the operator's status page (issue 14), served on the
// metrics listener at /status: every route with where it came from, its
// readiness, what waits on it, its last cold starts and its workload's
// wake and idle state, and the last config reload. Snapshot builds the
// view from the core's state; Handler serves it as HTML to a browser and
// as JSON to `Accept: application/json`. Everything is read from the
// state the request path keeps anyway (atomic snapshots and counters):
// the page costs nothing until it is asked for.
package status

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/scale"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/watch"
)

// Reloads keeps the outcome of the last config reload for the page. The
// zero value is ready: no reload yet.
type Reloads struct{ last atomic.Pointer[Reload] }

// Reload is one reload's outcome.
type Reload struct {
	Time time.Time
	Err  string // "" if it was applied
}

// Record notes a reload at at that ended with err (nil: applied).
func (r *Reloads) Record(at time.Time, err error) {
	rec := &Reload{Time: at}
	if err != nil {
		rec.Err = err.Error()
	}
	r.last.Store(rec)
}

// Last returns the last reload's outcome, nil if none since the start.
func (r *Reloads) Last() *Reload { return r.last.Load() }

// View is the page's content, and its JSON.
type View struct {
	Time time.Time `json:"time"`
	// LastReload is null until the config is first reloaded.
	LastReload *ReloadView `json:"last_reload"`
	Routes     []RouteView `json:"routes"`
}

// ReloadView is the last reload: Result "ok" or "error" with its Error.
type ReloadView struct {
	Time   time.Time `json:"time"`
	Result string    `json:"result"`
	Error  string    `json:"error,omitempty"`
}

// RouteView is one route ([[services]] entry, or an entry translated
// from the cluster).
type RouteView struct {
	Host       string   `json:"host"`
	Paths      []string `json:"paths"`
	ExactPaths []string `json:"exact_paths,omitempty"`
	// Source is "file" for the config file's entries, else the object
	// it came from: "Ingress ns/name", "HTTPRoute ns/name".
	Source string `json:"source"`
	// Service is "namespace/name:port"; Workload "kind namespace/name".
	Service  string `json:"service"`
	Workload string `json:"workload"`
	// State is "ready" (a ready endpoint), "starting" (no ready endpoint
	// and a cold start under way: requests parked or a wake-up issued) or
	// "cold" (no ready endpoint, nothing under way).
	State     string   `json:"state"`
	Endpoints []string `json:"endpoints"`
	// Target is the fixed upstream address, if the route has one.
	Target string `json:"target,omitempty"`
	// Parked requests wait for readiness; Active are parked, in flight
	// or tunnels; OpenTunnels are the host's WebSocket and passthrough
	// tunnels (shared by the routes of one host).
	Parked      int64 `json:"parked"`
	Active      int64 `json:"active"`
	OpenTunnels int64 `json:"open_tunnels"`
	// ColdStart is the cold start under way, null if none; ColdStarts the
	// last ones ended, newest first.
	ColdStart  *ColdView  `json:"cold_start"`
	ColdStarts []ColdView `json:"cold_starts"`
	Scaling    ScaleView  `json:"scaling"`
}

// ColdView is one cold start. Each phase is the time from its start to
// the scale-up issued, the first endpoint ready and the first response
// byte forwarded; null when not reached (or, for scale, when Agimo did
// not wake the workload). Failed: it timed out before readiness.
type ColdView struct {
	Start     time.Time `json:"start"`
	Scale     *float64  `json:"scale_seconds"`
	Ready     *float64  `json:"ready_seconds"`
	FirstByte *float64  `json:"first_byte_seconds"`
	Failed    bool      `json:"failed"`
}

// ScaleView is the workload's wake and idle state as this replica knows
// it (times null when unknown or never).
type ScaleView struct {
	Wake      bool       `json:"wake"`
	LastWake  *time.Time `json:"last_wake"`
	WakeError string     `json:"wake_error,omitempty"`
	// IdleAfter is 0 when the workload is never scaled down. IdleSince
	// is the last activity this replica saw; ScaleDownIn the seconds left
	// until it is idle for IdleAfter (0 once due), null when unknown.
	IdleAfter     float64    `json:"idle_after_seconds"`
	IdleSince     *time.Time `json:"idle_since"`
	ScaleDownIn   *float64   `json:"idle_scale_down_in_seconds"`
	LastScaleDown *time.Time `json:"last_idle_scale_down"`
}

// Snapshot reads the view of c (its routes now in force) at now.
func Snapshot(c *core.Core, reloads *Reloads, now time.Time) *View {
	v := &View{Time: now, Routes: []RouteView{}}
	if rl := reloads.Last(); rl != nil {
		v.LastReload = &ReloadView{Time: rl.Time, Result: "ok", Error: rl.Err}
		if rl.Err != "" {
			v.LastReload.Result = "error"
		}
	}
	tunnels := stats.OpenTunnels(c.Metrics)
	for _, r := range c.Routes().All() {
		v.Routes = append(v.Routes, routeView(r, c.Policy, tunnels, now))
	}
	return v
}

func routeView(r *route.Route, p *scale.Policy, tunnels map[string]int64, now time.Time) RouteView {
	s := &r.Svc
	st := r.Ready.State()
	_, active := r.Activity()
	w := watch.Workload{Kind: s.Type, Namespace: s.Namespace, Name: s.Name}
	rv := RouteView{
		Host: r.Host, Paths: s.Paths, ExactPaths: s.ExactPaths, Source: s.Source,
		Service:  fmt.Sprintf("%s/%s:%d", s.Namespace, s.ServiceName, s.ServicePort),
		Workload: fmt.Sprintf("%s %s/%s", s.Type, s.Namespace, s.Name),
		State:    "cold", Endpoints: st.Addrs, Target: r.Target,
		Parked: r.Parked(), Active: active, OpenTunnels: tunnels[r.Host],
		ColdStarts: []ColdView{},
	}
	if rv.Source == "" {
		rv.Source = "file"
	}
	if rv.Paths == nil {
		rv.Paths = []string{}
	}
	if rv.Endpoints == nil {
		rv.Endpoints = []string{}
	}
	last, cur := r.ColdStarts()
	for _, c := range last {
		rv.ColdStarts = append(rv.ColdStarts, ColdView{Start: c.Start, Scale: secs(c.Scale),
			Ready: secs(c.Ready), FirstByte: secs(c.FirstByte), Failed: c.Failed})
	}
	if cur != nil {
		sc, rd := cur.Phases()
		// A cold start older than the park timeout failed; BeginCold
		// records it as such when the next request parks.
		rv.ColdStart = &ColdView{Start: cur.Start, Scale: secs(sc), Ready: secs(rd),
			Failed: rd == 0 && now.Sub(cur.Start) > r.Timeout}
	}
	switch {
	case st.Ready:
		rv.State = "ready"
	case rv.ColdStart != nil && !rv.ColdStart.Failed:
		rv.State = "starting"
	}
	rv.Scaling = scaleView(s.Wake, s.IdleAfter.Duration, p.Workload(w), now)
	return rv
}

func scaleView(wake bool, idleAfter time.Duration, ws scale.WorkloadState, now time.Time) ScaleView {
	v := ScaleView{Wake: wake, LastWake: when(ws.LastWake), WakeError: ws.WakeError,
		IdleSince: when(ws.IdleSince), LastScaleDown: when(ws.LastScaleDown)}
	if ws.IdleAfter > 0 {
		idleAfter = ws.IdleAfter // the longest of the workload's routes
	}
	v.IdleAfter = idleAfter.Seconds()
	if idleAfter > 0 && !ws.IdleSince.IsZero() {
		left := max(idleAfter-now.Sub(ws.IdleSince), 0).Seconds()
		v.ScaleDownIn = &left
	}
	return v
}

// secs is d in seconds, nil for 0 (a phase not reached).
func secs(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	s := d.Seconds()
	return &s
}

// when is t, nil for the zero time.
func when(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
