package route

import (
	"bytes"
	"html/template"
	"math"
	"sync/atomic"
	"time"
)

// Features for cold services beyond parking (issue 7): health-check
// requests that must not wake a service, a waiting page for browsers, and
// a Retry-After learned from the service's own cold starts; and the
// timing of each cold start's phases.

// IsProbe reports whether a request comes from a health checker that the
// service's config names, by path or by user agent substring. path is the
// request target's path as sent (Path), compared byte for byte: a decoded
// or normalised path would let "/%68ealthz" or "/x/../healthz" pass as the
// probe, uncounted, while the app serves whatever those bytes name to it
// (issue 10).
func (r *Route) IsProbe(path, userAgent []byte) bool {
	for _, p := range r.Svc.ProbePaths {
		if string(path) == p {
			return true
		}
	}
	for _, s := range r.Svc.ProbeUserAgents {
		if s != "" && bytes.Contains(userAgent, []byte(s)) {
			return true
		}
	}
	return false
}

// HasProbes reports whether the service names any probe, so a front end
// can skip extracting the path and user agent.
func (r *Route) HasProbes() bool {
	return len(r.Svc.ProbePaths) > 0 || len(r.Svc.ProbeUserAgents) > 0
}

// WantsWaitingPage reports whether a cold request should get the waiting
// page: a browser navigating (GET, accepting HTML, not an upgrade).
func (r *Route) WantsWaitingPage(get bool, accept []byte, upgrade bool) bool {
	return r.waiting != nil && get && !upgrade && bytes.Contains(accept, []byte("text/html"))
}

const defaultWaitingPage = `<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="{{.RefreshSeconds}}">
<title>Starting {{.Host}}…</title>
<style>body{font-family:system-ui,sans-serif;display:grid;place-items:center;height:90vh;color:#333}</style>
</head><body><div><h1>Starting {{.Host}}…</h1>
<p>This app was idle and is waking up. This page reloads itself every {{.RefreshSeconds}} seconds.</p>
</div></body></html>
`

// waitingPageData is what a waiting page template may use.
type waitingPageData struct {
	Host, Service  string
	RefreshSeconds int
}

func parseWaitingPage(text string) (*template.Template, error) {
	if text == "" {
		text = defaultWaitingPage
	}
	return template.New("waiting").Parse(text)
}

// WaitingRefresh is the waiting page's reload period, in seconds, also
// sent as its Retry-After.
const WaitingRefresh = 2

// WaitingPage renders the service's waiting page, answered with 503 (which
// keeps caches and crawlers from taking it for the app; browsers show it
// all the same).
func (r *Route) WaitingPage() ([]byte, error) {
	var b bytes.Buffer
	err := r.waiting.Execute(&b, waitingPageData{Host: r.Host, Service: r.Svc.ServiceName, RefreshSeconds: WaitingRefresh})
	return b.Bytes(), err
}

// coldStarts learns how long a service takes to become ready, to answer
// Retry-After with what a client should really wait (issue 7).
type coldStarts struct {
	ewmaMillis atomic.Int64 // exponentially weighted mean; 0 until the first
}

// observe records one park that ended in release after d.
func (c *coldStarts) observe(d time.Duration) {
	ms := d.Milliseconds()
	for {
		old := c.ewmaMillis.Load()
		next := ms
		if old > 0 {
			next = (old*7 + ms) / 8
		}
		if next == 0 {
			next = 1
		}
		if c.ewmaMillis.CompareAndSwap(old, next) {
			return
		}
	}
}

// RetryAfter is the learned cold-start time in whole seconds, at least 1
// and at most 120, or def when nothing was learned yet.
func (r *Route) RetryAfter(def int) int {
	ms := r.cold.ewmaMillis.Load()
	if ms == 0 {
		return def
	}
	return int(min(max(math.Ceil(float64(ms)/1000), 1), 120))
}

// ColdStart follows one cold start of a route, from the first request
// parked to the first response byte forwarded, to time its phases.
type ColdStart struct {
	Start time.Time
	// Waking is set once a scale-up was started for this cold start.
	Waking    atomic.Bool
	readyDone atomic.Bool
	// scale and ready are the phases' durations once timed, 0 before.
	scale, ready atomic.Int64
}

// ColdRecord is one cold start as the status page shows it: when it
// began and how long each phase took from then (0: not reached).
// Failed: its requests timed out before the service became ready. A
// cold start that reached readiness but forwarded nothing (its clients
// left) ends with the next one, without a first byte.
type ColdRecord struct {
	Start                   time.Time
	Scale, Ready, FirstByte time.Duration
	Failed                  bool
}

// coldHistory is how many cold starts a route remembers.
const coldHistory = 5

// record ends cs in the route's history, newest first. The history is an
// immutable slice swapped whole: readers take it without a lock.
func (r *Route) record(cs *ColdStart, firstByte time.Duration, failed bool) {
	ready := time.Duration(cs.ready.Load())
	rec := ColdRecord{Start: cs.Start, Scale: time.Duration(cs.scale.Load()),
		Ready: ready, FirstByte: firstByte, Failed: failed && ready == 0}
	for {
		old := r.history.Load()
		next := make([]ColdRecord, 0, coldHistory)
		next = append(next, rec)
		if old != nil {
			next = append(next, (*old)[:min(len(*old), coldHistory-1)]...)
		}
		if r.history.CompareAndSwap(old, &next) {
			return
		}
	}
}

// ColdStarts returns the route's last cold starts, newest first, and the
// one under way (nil if none). Neither may be modified.
func (r *Route) ColdStarts() (last []ColdRecord, current *ColdStart) {
	if h := r.history.Load(); h != nil {
		last = *h
	}
	return last, r.cs.Load()
}

// Phases returns the durations of cs's phases reached so far (0: not yet).
func (cs *ColdStart) Phases() (scale, ready time.Duration) {
	return time.Duration(cs.scale.Load()), time.Duration(cs.ready.Load())
}

// Scaled ends cs's "scale" phase: its scale-up was issued.
func (r *Route) Scaled(cs *ColdStart) {
	d := time.Since(cs.Start)
	cs.scale.Store(int64(d))
	r.M.Phase("scale").Update(d.Seconds())
}

// BeginCold notes a request parking on r and returns the cold start it
// belongs to: the first request starts one. A cold start older than the
// park timeout failed (its requests got 503: the pod never became ready,
// or was scaled away again), so the request starts a new one, which may
// wake the workload again.
func (r *Route) BeginCold() *ColdStart {
	cs := r.cs.Load()
	if cs == nil || time.Since(cs.Start) > r.Timeout {
		fresh := &ColdStart{Start: time.Now()}
		if r.cs.CompareAndSwap(cs, fresh) {
			if cs != nil {
				r.record(cs, 0, true)
			}
			return fresh
		}
		cs = r.cs.Load()
	}
	return cs
}

// Released notes a parked request released by readiness after waiting
// since start: its park time, the learned cold-start time, and, for the
// first, the end of the cold start's "ready" phase.
func (r *Route) Released(start time.Time) {
	waited := time.Since(start)
	r.M.ParkTime.Update(waited.Seconds())
	r.cold.observe(waited)
	r.ReadyCold()
}

// ReadyCold ends the cold start's "ready" phase, once. A cold start may
// end without a parked request (a waiting page), so forwarding calls it
// too.
func (r *Route) ReadyCold() {
	if cs := r.cs.Load(); cs != nil && cs.readyDone.CompareAndSwap(false, true) {
		d := time.Since(cs.Start)
		cs.ready.Store(int64(d))
		r.M.Phase("ready").Update(d.Seconds())
	}
}

// FirstByte notes a response head received from upstream: the first
// after readiness ends the cold start.
func (r *Route) FirstByte() {
	if cs := r.cs.Load(); cs != nil && cs.readyDone.Load() && r.cs.CompareAndSwap(cs, nil) {
		d := time.Since(cs.Start)
		r.M.Phase("first_byte").Update(d.Seconds())
		r.record(cs, d, false)
	}
}
