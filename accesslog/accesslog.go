// Package accesslog writes Agimo's access log (issue 14): one structured
// line per request, per HTTP/2 stream and per tunnel, at its end, through
// zerolog on a stream of its own (not the operator log's).
//
// Writing never blocks a request. The front end renders its line on its
// own goroutine into a pooled buffer and hands it to a bounded channel;
// one goroutine, owned by the Logger and awaited by Close, takes the
// lines every 10 ms and writes them out. A full channel drops the line and counts it
// (agimo_access_log_dropped_total{reason="full"}); a destination that
// fails a write is logged once, its lines counted as dropped
// (reason="write_error"), and writing is tried again with backoff, 10 ms
// doubling to 5.12 s, the lines that do not fit meanwhile dropped and
// counted as write errors too; the recovery is logged once. Serving never
// stops for the log.
package accesslog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
)

// Protocols of Entry.Proto.
const (
	ProtoHTTP1       = "HTTP/1.1"
	ProtoHTTP2       = "HTTP/2"
	ProtoPassthrough = "passthrough"
)

// Defaults of Options.
const (
	DefaultQueryMax = 256
	DefaultBuffer   = 8192
)

// Options configure a Logger.
type Options struct {
	// Format is "json" (default) or "console" (zerolog's human layout).
	Format string
	// Sample is the share, 0 to 1, of successful requests (status below
	// 400) logged; errors are always logged. 0 means 1: all.
	Sample float64
	// QueryMax cuts a path's query after this many bytes (default
	// DefaultQueryMax; negative: drop the query).
	QueryMax int
	// Buffer is how many lines wait for the writer before new ones are
	// dropped (default DefaultBuffer).
	Buffer int
	// Metrics gets agimo_access_log_dropped_total.
	Metrics *metrics.Set
	// Log is the operator log, told once when the destination fails.
	Log zerolog.Logger
}

// Entry is what a front end knows of a request at its end. Byte slices
// are read during Log only, so a front end may pass its own buffers.
type Entry struct {
	Start time.Time // when the request's head arrived
	// Client is the client's address; ClientString stands in for it when
	// the front end has only a string (net/http's RemoteAddr).
	Client       net.Addr
	ClientString string
	Method       []byte
	Host         []byte // as the client named it
	Path         []byte // the request target; its query is cut at QueryMax
	Proto        string
	Status       int // 499: the client left before an answer (nginx's)
	BytesIn      int64
	BytesOut     int64
	Parked       time.Duration
	Upstream     string // the endpoint's address, if one was tried
	Route        string // the service's host
	RequestID    []byte
	// Reason says why Agimo answered itself (park_timeout, no_route...).
	Reason string
}

// Logger writes access log lines. A nil *Logger logs nothing: front ends
// call it unconditionally.
type Logger struct {
	zl       zerolog.Logger
	sample   float64
	queryMax int
	lines    chan *[]byte
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	dropFull *metrics.Counter
	dropErr  *metrics.Counter
	out      io.Writer
	console  bool
	log      zerolog.Logger
	// failing is set while the destination fails: the sink then counts
	// the lines it cannot buffer as write errors.
	failing atomic.Bool
	// tick, if set (tests), stands in for the writer's ticker, and
	// ticked, if set, is called once the writer is done with a tick.
	tick   <-chan time.Time
	ticked func()
	// second is the last second a line was logged in, formatted.
	second atomic.Pointer[second]
}

// second is a second's time as RFC 3339 text, without its fraction and
// zone: "2026-12-07T06:20:01".
type second struct {
	unix int64
	text []byte
}

// drainEvery is how often the writer takes the lines waiting: the most a
// line waits before it is written.
const drainEvery = 10 * time.Millisecond

// maxBackoffTicks bounds the wait between two attempts at a failing
// destination: 512 ticks, 5.12 s.
const maxBackoffTicks = 512

// linePool recycles rendered lines between the front ends and the writer.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// New starts a Logger writing to w.
func New(w io.Writer, o Options) (*Logger, error) { return newLogger(w, o, nil, nil) }

// newLogger is New with the writer's ticks from tick (nil: a ticker of
// drainEvery) and ticked called after each.
func newLogger(w io.Writer, o Options, tick <-chan time.Time, ticked func()) (*Logger, error) {
	l := &Logger{sample: o.Sample, queryMax: o.QueryMax, out: w, log: o.Log,
		stop: make(chan struct{}), done: make(chan struct{}), tick: tick, ticked: ticked}
	switch o.Format {
	case "", "json":
	case "console":
		l.console = true
	default:
		return nil, fmt.Errorf("access log format %q: want json or console", o.Format)
	}
	if o.Sample < 0 || o.Sample > 1 {
		return nil, fmt.Errorf("access log sample %v: want a share between 0 and 1", o.Sample)
	}
	if l.sample == 0 {
		l.sample = 1
	}
	if o.QueryMax == 0 {
		l.queryMax = DefaultQueryMax
	}
	n := o.Buffer
	if n <= 0 {
		n = DefaultBuffer
	}
	l.lines = make(chan *[]byte, n)
	set := o.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	l.dropFull = set.GetOrCreateCounter(`agimo_access_log_dropped_total{reason="full"}`)
	l.dropErr = set.GetOrCreateCounter(`agimo_access_log_dropped_total{reason="write_error"}`)
	l.zl = zerolog.New(sink{l})
	go l.run()
	return l, nil
}

// sink hands each line zerolog renders to the writer goroutine.
type sink struct{ l *Logger }

func (s sink) Write(p []byte) (int, error) {
	bp := linePool.Get().(*[]byte)
	*bp = append((*bp)[:0], p...)
	select {
	case s.l.lines <- bp:
	default:
		linePool.Put(bp)
		if s.l.failing.Load() {
			s.l.dropErr.Inc()
		} else {
			s.l.dropFull.Inc()
		}
	}
	return len(p), nil
}

// Log writes e's line, unless it is a success left out by sampling. It
// never blocks.
func (l *Logger) Log(e *Entry) {
	if l == nil || (e.Status < 400 && l.sample < 1 && rand.Float64() >= l.sample) {
		return
	}
	now := time.Now() // one clock read for the time and the duration
	var tb [40]byte
	ev := l.zl.Log().Bytes("time", l.appendTime(tb[:0], now))
	if e.Client != nil {
		var ab [64]byte
		ev.Bytes("client", appendAddr(ab[:0], e.Client))
	} else {
		ev.Str("client", e.ClientString)
	}
	var db, pb [32]byte
	ev.Bytes("method", e.Method).
		Bytes("host", e.Host).
		Bytes("path", cutQuery(e.Path, l.queryMax)).
		Str("proto", e.Proto).
		Int("status", e.Status).
		Int64("bytes_in", e.BytesIn).
		Int64("bytes_out", e.BytesOut).
		RawJSON("duration", appendSeconds(db[:0], now.Sub(e.Start))).
		RawJSON("parked", appendSeconds(pb[:0], e.Parked)).
		Str("upstream", e.Upstream).
		Str("route", e.Route).
		Bytes("request_id", e.RequestID).
		Bool("cold_start", e.Parked > 0)
	if e.Reason != "" {
		ev.Str("reason", e.Reason)
	}
	ev.Send()
}

// appendAddr appends a's text without the allocation of a.String() for
// the usual *net.TCPAddr.
func appendAddr(dst []byte, a net.Addr) []byte {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(dst)
	}
	return append(dst, a.String()...)
}

// appendSeconds appends d in seconds as a JSON number, nine decimals at
// most and no trailing zeros ("2.412", "0"): what strconv's shortest
// formatting of d.Seconds() gives, for a fraction of its cost (the two
// floats were a fifth of a line's rendering). strconv formats no
// fixed-point integer, hence the loop. A negative d (a zero Start) is 0.
func appendSeconds(dst []byte, d time.Duration) []byte {
	d = max(d, 0)
	dst = strconv.AppendInt(dst, int64(d/time.Second), 10)
	frac := int64(d % time.Second)
	if frac == 0 {
		return dst
	}
	return appendFraction(dst, frac)
}

// appendFraction appends ns, 1 to 999,999,999 nanoseconds, as a decimal
// fraction of a second: '.' and nine digits at most, no trailing zeros.
func appendFraction(dst []byte, ns int64) []byte {
	var f [9]byte
	for i := len(f) - 1; i >= 0; i-- {
		f[i] = byte('0' + ns%10)
		ns /= 10
	}
	n := len(f)
	for f[n-1] == '0' {
		n--
	}
	return append(append(dst, '.'), f[:n]...)
}

// appendTime appends t in UTC as time.RFC3339Nano does, formatting its
// second once per second: the layout's date and clock were a tenth of a
// line's rendering.
func (l *Logger) appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	s := l.second.Load()
	if s == nil || s.unix != t.Unix() {
		s = &second{unix: t.Unix(), text: t.AppendFormat(nil, "2006-01-02T15:04:05")}
		l.second.Store(s)
	}
	dst = append(dst, s.text...)
	if ns := t.Nanosecond(); ns != 0 {
		dst = appendFraction(dst, int64(ns))
	}
	return append(dst, 'Z')
}

// cutQuery returns target with its query cut after max bytes (negative:
// without the query). It returns a prefix of target, so nothing is copied.
func cutQuery(target []byte, max int) []byte {
	for i, c := range target {
		if c != '?' {
			continue
		}
		if max < 0 {
			return target[:i]
		}
		if len(target)-i-1 > max {
			return target[:i+1+max]
		}
		break
	}
	return target
}

// run writes lines until Close, then what is left.
//
// Each tick it takes the lines waiting and writes them in one attempt
// (one buffered Flush). An attempt that fails drops its lines (counted,
// reason="write_error") and puts the next one off: 1 tick, then 2, 4, ...
// up to maxBackoffTicks, back to every tick after a success. Meanwhile
// lines wait in the channel, and those that do not fit are dropped and
// counted by the sink, also as write errors. The operator log hears once
// of a run of failures, and once of the recovery.
func (l *Logger) run() {
	defer close(l.done)
	tick := l.tick
	if tick == nil {
		t := time.NewTicker(drainEvery)
		defer t.Stop()
		tick = t.C
	}
	bw := bufio.NewWriterSize(l.out, 64<<10)
	var cw *zerolog.ConsoleWriter
	if l.console {
		cw = &zerolog.ConsoleWriter{Out: bw, TimeFormat: time.RFC3339Nano, NoColor: true}
	}
	var (
		pending  int    // lines in bw
		wait     = 1    // ticks from a failed attempt to the next
		skip     = 0    // ticks still to let pass before the next attempt
		failures uint64 // attempts failed since the last success
		dropped  uint64 // write_error drops when the run of failures began
	)
	take := func() {
		for {
			select {
			case bp := <-l.lines:
				if cw != nil {
					// ConsoleWriter wants one event per Write; its errors
					// are bw's, which Flush reports.
					_, _ = cw.Write(*bp)
				} else {
					_, _ = bw.Write(*bp)
				}
				pending++
				linePool.Put(bp)
			default:
				return
			}
		}
	}
	attempt := func() {
		if pending == 0 {
			return
		}
		err := bw.Flush()
		n := pending
		pending = 0
		if err == nil {
			if failures > 0 {
				l.failing.Store(false)
				l.log.Info().Uint64("failed_attempts", failures).Uint64("dropped", l.dropErr.Get()-dropped).
					Msg("access log: writing again")
			}
			failures, wait, skip = 0, 1, 0
			return
		}
		if failures == 0 {
			dropped = l.dropErr.Get()
			l.failing.Store(true)
			l.log.Error().Err(err).Msg("access log: write failed; lines are dropped and counted, writing is retried with backoff, serving goes on")
		} else {
			wait = min(2*wait, maxBackoffTicks)
		}
		l.dropErr.Add(n)
		failures++
		skip = wait - 1
		// A bufio.Writer keeps its error: start afresh with the next.
		bw.Reset(l.out)
	}
	// The writer drains the buffer on a tick rather than on each line: a
	// send to a buffered channel nobody waits on wakes no goroutine, so
	// a request pays for its line's rendering and one channel send, not
	// for a wake-up of the writer (a futex under load). At 8192 lines
	// every 10 ms, the buffer holds 800,000 lines a second.
	for {
		select {
		case <-tick:
			if skip > 0 {
				skip--
			} else {
				take()
				attempt()
			}
			if l.ticked != nil {
				l.ticked()
			}
		case <-l.stop:
			// One last attempt, backoff or not.
			take()
			attempt()
			return
		}
	}
}

// Close writes the lines still buffered and stops the writer, waiting for
// it until ctx is done (a destination that blocks for good, a pipe nobody
// reads, is left to its goroutine then). Lines logged after Close are
// dropped. Close on a nil Logger does nothing.
func (l *Logger) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.stopOnce.Do(func() { close(l.stop) })
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("access log: %w", ctx.Err())
	}
}
