// Package load is the bench suite's load generator: closed-loop (or
// rate-limited) HTTP/1.1 keep-alive requests with fasthttp's client (plain
// or over TLS), WebSocket echo round trips with gorilla/websocket,
// server-sent event streams, new TLS handshakes, gRPC unary calls with
// grpc-go, and HTTP/2 requests by h2load (nghttp2-client). Each of Conns workers owns one connection and its own latency
// histogram, so the hot loop takes no lock; the histograms are merged when
// the run ends.
package load

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode names a kind of load.
type Mode string

const (
	ModeHTTP Mode = "http" // requests on keep-alive connections
	ModeWS   Mode = "ws"   // WebSocket echo: send a message, wait for it back
	ModeSSE  Mode = "sse"  // event streams: time to first event, events/s
	// ModeHandshake: a new TLS 1.3 connection per request, no resumption.
	ModeHandshake Mode = "handshake"
	// ModeH2: HTTP/2 requests by h2load (nghttp2-client), h2 over TLS
	// (https://) or h2c with prior knowledge (http://).
	ModeH2   Mode = "h2"
	ModeGRPC Mode = "grpc" // gRPC unary calls, one HTTP/2 connection per worker
)

// Config describes one load run.
type Config struct {
	Mode   Mode
	URL    string        // http://host:port/path (ws:// is derived for ModeWS)
	Host   string        // Host header; "" = the URL's
	Conns  int           // concurrent connections, one worker each
	Dur    time.Duration // measured time
	Warmup time.Duration // run before measuring; not counted
	// Rate, if positive, is the total requests per second, spread evenly
	// over the connections; latency then counts from when each request
	// was due, so a stalled server is not hidden by the client waiting
	// politely (coordinated omission).
	Rate float64
	// Method and BodySize: a request body of BodySize bytes, sent as a
	// stream with a Content-Length (POST unless Method says otherwise).
	Method   string
	BodySize int
	// MsgSize is the WebSocket message size in bytes.
	MsgSize int
	// CAFile is a PEM file of the certificates that https targets are
	// verified against (the system's roots if empty); the TLS server name
	// is Host's.
	CAFile string
	// Streams is ModeH2's concurrent streams per connection (h2load -m).
	Streams int
	// Timeout bounds one request, round trip or stream.
	Timeout time.Duration
	// Progress, if set, is called about once a second while the run lasts.
	Progress func(Snapshot)
	// Phase, if set, is called when measuring starts (true) and when it
	// ends (false), so a caller can sample other processes' CPU time over
	// exactly the measured window.
	Phase func(measuring bool)
}

// Snapshot is the state of a run in progress.
type Snapshot struct {
	Elapsed  time.Duration
	Ops      int64
	Errors   int64
	Measured bool // past the warm-up
}

// Result is everything a run measured. For ModeHTTP an op is a request,
// for ModeWS a round trip, for ModeSSE a stream; Latency is the op's
// latency (for SSE: time to first event).
type Result struct {
	Mode     Mode             `json:"mode"`
	URL      string           `json:"url"`
	Host     string           `json:"host"`
	Conns    int              `json:"conns"`
	Rate     float64          `json:"rate,omitempty"`
	Seconds  float64          `json:"seconds"`
	Ops      int64            `json:"ops"`
	Events   int64            `json:"events,omitempty"`
	Bytes    int64            `json:"bytes"` // payload bytes received
	Errors   int64            `json:"errors"`
	ErrKinds map[string]int64 `json:"error_kinds,omitempty"`
	Latency  *Hist            `json:"latency"`
}

// OpsPerSec is the throughput in ops per second.
func (r *Result) OpsPerSec() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Seconds
}

// EventsPerSec is the SSE event throughput.
func (r *Result) EventsPerSec() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Events) / r.Seconds
}

// BytesPerSec is the payload throughput.
func (r *Result) BytesPerSec() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Bytes) / r.Seconds
}

// Summary is a one-paragraph human report of r.
func (r *Result) Summary() string {
	var b strings.Builder
	unit := map[Mode]string{ModeHTTP: "requests", ModeWS: "round trips", ModeSSE: "streams", ModeHandshake: "handshakes",
		ModeH2: "requests", ModeGRPC: "calls"}[r.Mode]
	fmt.Fprintf(&b, "%s %s (Host %s), %d connections, %.1fs measured\n", r.Mode, r.URL, r.Host, r.Conns, r.Seconds)
	fmt.Fprintf(&b, "  %d %s, %.0f/s, %.2f MiB/s received", r.Ops, unit, r.OpsPerSec(), r.BytesPerSec()/(1<<20))
	if r.Mode == ModeSSE {
		fmt.Fprintf(&b, ", %d events, %.0f events/s", r.Events, r.EventsPerSec())
	}
	fmt.Fprintf(&b, "\n  errors: %d", r.Errors)
	for _, k := range slices.Sorted(maps.Keys(r.ErrKinds)) {
		fmt.Fprintf(&b, "\n    %6d  %s", r.ErrKinds[k], k)
	}
	what := "latency"
	if r.Mode == ModeSSE {
		what = "time to first event"
	}
	h := r.Latency
	fmt.Fprintf(&b, "\n  %s: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n", what,
		Fmt(h.Quantile(.5)), Fmt(h.Quantile(.9)), Fmt(h.Quantile(.99)), Fmt(h.Quantile(.999)), Fmt(h.Max()), Fmt(h.Mean()))
	return b.String()
}

// Fmt prints a latency with three significant digits in a fitting unit.
func Fmt(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3gs", d.Seconds())
}

// maxErrKinds bounds the distinct error messages kept: a run that fails
// every request must not grow a map with a million distinct strings.
const maxErrKinds = 20

// worker is one connection's counters, written only by its goroutine
// except for the atomics the progress reporter reads.
type worker struct {
	index     int
	ops, errs atomic.Int64
	events    int64
	bytes     int64
	hist      *Hist
	errKinds  map[string]int64
}

func (w *worker) fail(err error) {
	w.errs.Add(1)
	k := errKind(err)
	if _, ok := w.errKinds[k]; ok || len(w.errKinds) < maxErrKinds {
		w.errKinds[k]++
	}
}

// errKind shortens an error to a stable key: addresses and ports vary
// from connection to connection and would make every error distinct.
func errKind(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s[:i], "127.0.0.") {
		s = s[i+2:]
	}
	return s
}

// clock tells workers whether the run is past its warm-up and over.
type clock struct {
	start, measureFrom, end time.Time
}

func (c *clock) measuring(t time.Time) bool { return !t.Before(c.measureFrom) }

// running reports whether the run goes on: before its end and not
// cancelled.
func (c *clock) running(ctx context.Context) bool {
	return ctx.Err() == nil && time.Now().Before(c.end)
}

// run drives conns workers with fn until the clock's end, reporting
// progress, then merges their counters into a Result. fn runs the whole
// life of one worker's connection and returns when ctx is done.
func run(ctx context.Context, cfg *Config, fn func(ctx context.Context, c *clock, w *worker)) *Result {
	if cfg.Conns <= 0 {
		cfg.Conns = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	now := time.Now()
	c := &clock{start: now, measureFrom: now.Add(cfg.Warmup), end: now.Add(cfg.Warmup + cfg.Dur)}
	ctx, cancel := context.WithDeadline(ctx, c.end)
	defer cancel()
	ws := make([]*worker, cfg.Conns)
	var wg sync.WaitGroup
	for i := range ws {
		w := &worker{index: i, hist: NewHist(), errKinds: map[string]int64{}}
		ws[i] = w
		wg.Go(func() { fn(ctx, c, w) })
	}
	progressDone := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress != nil {
		pwg.Go(func() { reportProgress(cfg.Progress, c, ws, progressDone) })
	}
	var started bool // written by the marker goroutine, read after pwg.Wait
	if cfg.Phase != nil {
		pwg.Go(func() { started = markStart(cfg.Phase, c, progressDone) })
	}
	wg.Wait()
	close(progressDone)
	pwg.Wait()
	if started {
		// After the workers, whose last ops may finish a little past the
		// end: their cost is a connection's worth of ops out of the run's.
		cfg.Phase(false)
	}

	elapsed := time.Since(c.measureFrom)
	if time.Now().After(c.end) {
		elapsed = c.end.Sub(c.measureFrom)
	}
	r := &Result{Mode: cfg.Mode, URL: cfg.URL, Host: cfg.Host, Conns: cfg.Conns, Rate: cfg.Rate,
		Seconds: elapsed.Seconds(), Latency: NewHist(), ErrKinds: map[string]int64{}}
	for _, w := range ws {
		r.Ops += w.ops.Load()
		r.Errors += w.errs.Load()
		r.Events += w.events
		r.Bytes += w.bytes
		r.Latency.Merge(w.hist)
		for k, v := range w.errKinds {
			r.ErrKinds[k] += v
		}
	}
	return r
}

func reportProgress(f func(Snapshot), c *clock, ws []*worker, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			var s Snapshot
			s.Measured = c.measuring(now)
			s.Elapsed = now.Sub(c.start)
			for _, w := range ws {
				s.Ops += w.ops.Load()
				s.Errors += w.errs.Load()
			}
			f(s)
		}
	}
}

// markStart calls f(true) when the measured window starts, unless the
// run is over first; it reports whether it did.
func markStart(f func(bool), c *clock, done <-chan struct{}) bool {
	t := time.NewTimer(time.Until(c.measureFrom))
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		f(true)
		return true
	}
}

// pacer spaces one worker's ops for a target rate. Each worker starts at
// a different offset so that the connections do not fire in lockstep.
type pacer struct {
	interval time.Duration
	next     time.Time
}

func newPacer(cfg *Config, c *clock, index int) *pacer {
	if cfg.Rate <= 0 {
		return nil
	}
	iv := time.Duration(float64(time.Second) * float64(cfg.Conns) / cfg.Rate)
	return &pacer{interval: iv, next: c.start.Add(iv * time.Duration(index) / time.Duration(cfg.Conns))}
}

// wait sleeps until the next op is due and returns when it was due: the
// start time latency is measured from. Without a pacer it returns now.
func (p *pacer) wait(ctx context.Context) (time.Time, bool) {
	if p == nil {
		return time.Now(), ctx.Err() == nil
	}
	due := p.next
	p.next = p.next.Add(p.interval)
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return due, false
		}
	}
	return due, ctx.Err() == nil
}
