package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
)

// lines is a destination that hands each line written to a channel.
type lines struct{ c chan string }

func newLines() *lines { return &lines{c: make(chan string, 1024)} }

func (l *lines) Write(p []byte) (int, error) {
	for _, s := range strings.SplitAfter(string(p), "\n") {
		if s != "" {
			l.c <- s
		}
	}
	return len(p), nil
}

func (l *lines) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case s := <-l.c:
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no access log line")
		return nil
	}
}

func closeLog(t testing.TB, l *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLine(t *testing.T) {
	out := newLines()
	l, err := New(out, Options{QueryMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(t, l)
	l.Log(&Entry{Start: time.Now().Add(-time.Second), Client: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4242},
		Method: []byte("GET"), Host: []byte("a.test"), Path: []byte("/p?abcdef"), Proto: ProtoHTTP1, Status: 503,
		BytesIn: 1, BytesOut: 2, Parked: 500 * time.Millisecond, Upstream: "10.1.1.1:80", Route: "a.test",
		RequestID: []byte("id-1"), Reason: "park_timeout"})
	m := out.next(t)
	for k, want := range map[string]any{
		"client": "10.0.0.1:4242", "method": "GET", "host": "a.test", "path": "/p?abc", "proto": "HTTP/1.1",
		"status": 503.0, "bytes_in": 1.0, "bytes_out": 2.0, "parked": 0.5, "upstream": "10.1.1.1:80",
		"route": "a.test", "request_id": "id-1", "cold_start": true, "reason": "park_timeout",
	} {
		if m[k] != want {
			t.Errorf("%s = %v; want %v", k, m[k], want)
		}
	}
	if d, _ := m["duration"].(float64); d < 1 {
		t.Errorf("duration = %v; want ≥ 1", m["duration"])
	}
	if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
		t.Errorf("time %v: %v", m["time"], err)
	}
}

func TestCutQuery(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"/a?bcd", 2, "/a?bc"},
		{"/a?bcd", 3, "/a?bcd"},
		{"/a?bcd", -1, "/a"},
		{"/a", 2, "/a"},
		{"/a?", 0, "/a?"},
	} {
		if got := string(cutQuery([]byte(tc.in), tc.max)); got != tc.want {
			t.Errorf("cutQuery(%q, %d) = %q; want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// TestSampleKeepsErrors: with a sample of almost nothing, every error is
// logged and (nearly) no success.
func TestSampleKeepsErrors(t *testing.T) {
	out := newLines()
	l, err := New(out, Options{Sample: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		l.Log(&Entry{Status: 200})
		l.Log(&Entry{Status: 502})
	}
	closeLog(t, l)
	close(out.c)
	n := 0
	for s := range out.c {
		if !strings.Contains(s, `"status":502`) {
			t.Errorf("logged %q; want only errors", s)
		}
		n++
	}
	if n != 100 {
		t.Errorf("%d lines; want the 100 errors", n)
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return len(p), nil
}

// TestFullDropsAndCounts: a destination that blocks never blocks Log;
// what does not fit is dropped and counted.
func TestFullDropsAndCounts(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	set := metrics.NewSet()
	l, err := New(w, Options{Buffer: 4, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(&Entry{Status: 200})
	<-w.entered // the writer holds one line, blocked
	for range 10 {
		l.Log(&Entry{Status: 200}) // 4 fit, 6 are dropped; none blocks
	}
	if got := set.GetOrCreateCounter(`agimo_access_log_dropped_total{reason="full"}`).Get(); got != 6 {
		t.Errorf("dropped = %d; want 6", got)
	}
	close(w.release)
	closeLog(t, l)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestWriteErrorLoggedOnce: a failing destination is reported once,
// each lost line counted, and logging goes on.
func TestWriteErrorLoggedOnce(t *testing.T) {
	var ops bytes.Buffer
	set := metrics.NewSet()
	for _, format := range []string{"json", "console"} {
		l, err := New(failingWriter{}, Options{Format: format, Metrics: set, Log: zerolog.New(&ops)})
		if err != nil {
			t.Fatal(err)
		}
		l.Log(&Entry{Status: 500})
		l.Log(&Entry{Status: 500})
		closeLog(t, l)
	}
	if n := strings.Count(ops.String(), "access log: write failed"); n != 2 {
		t.Errorf("operator log has %d reports; want one per logger:\n%s", n, ops.String())
	}
	if got := set.GetOrCreateCounter(`agimo_access_log_dropped_total{reason="write_error"}`).Get(); got != 4 {
		t.Errorf("write_error drops = %d; want 4", got)
	}
}

func TestConsoleFormat(t *testing.T) {
	var b syncBuf
	l, err := New(&b, Options{Format: "console"})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(&Entry{Status: 404, Method: []byte("GET"), Reason: "no_route"})
	closeLog(t, l)
	if s := b.String(); !strings.Contains(s, "reason=no_route") || !strings.Contains(s, "status=404") {
		t.Errorf("console line %q; want key=value fields", s)
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Log(&Entry{Status: 200})
	if err := l.Close(context.Background()); err != nil {
		t.Errorf("Close = %v; want nil", err)
	}
}

func TestOptionsRejected(t *testing.T) {
	if _, err := New(nil, Options{Format: "xml"}); err == nil {
		t.Error("format xml accepted")
	}
	if _, err := New(nil, Options{Sample: 2}); err == nil {
		t.Error("sample 2 accepted")
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// flakyWriter fails its first n Writes, then keeps what it is given; it
// counts the attempts.
type flakyWriter struct {
	mu       sync.Mutex
	n        int
	attempts int
	b        bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attempts++
	if w.attempts <= w.n {
		return 0, errors.New("disk full")
	}
	return w.b.Write(p)
}

func (w *flakyWriter) state() (attempts int, out string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.attempts, w.b.String()
}

// TestWriteErrorBackoff: a destination failing 3 times is tried again
// after 1, 2, then 4 ticks; the lines that do not fit the buffer
// meanwhile are dropped and counted; those after the recovery arrive;
// the operator log hears once of the failure and once of the recovery.
func TestWriteErrorBackoff(t *testing.T) {
	w := &flakyWriter{n: 3}
	set := metrics.NewSet()
	var ops syncBuf
	tick, ticked := make(chan time.Time), make(chan struct{})
	l, err := newLogger(w, Options{Buffer: 2, Metrics: set, Log: zerolog.New(&ops)}, tick,
		func() { ticked <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	// Before each tick one line, its status 200 + the tick's number.
	// Attempts at ticks 1 (fails: next after 1 tick), 2 (fails: after 2),
	// 4 (fails: after 4) and 8 (succeeds), then at every tick. Lines 1,
	// 2, 3 and 4 go with the failed attempts; 7 and 8 find the buffer (2
	// lines: 5 and 6) full.
	want := []int{1, 2, 2, 3, 3, 3, 3, 4, 5, 6}
	got := make([]int, len(want))
	for i := range want {
		l.Log(&Entry{Status: 201 + i})
		tick <- time.Time{}
		<-ticked
		got[i], _ = w.state()
	}
	if !slices.Equal(got, want) {
		t.Errorf("attempts after each tick: got %v; want %v", got, want)
	}
	closeLog(t, l)
	_, out := w.state()
	var statuses []int
	for s := range strings.Lines(out) {
		var m struct{ Status int }
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		statuses = append(statuses, m.Status)
	}
	if want := []int{205, 206, 209, 210}; !slices.Equal(statuses, want) {
		t.Errorf("lines written: got statuses %v; want %v", statuses, want)
	}
	for reason, want := range map[string]uint64{"write_error": 6, "full": 0} {
		if got := set.GetOrCreateCounter(`agimo_access_log_dropped_total{reason="` + reason + `"}`).Get(); got != want {
			t.Errorf("dropped %s: got %d; want %d", reason, got, want)
		}
	}
	log := ops.String()
	if n := strings.Count(log, `"level":"error"`); n != 1 {
		t.Errorf("operator log has %d errors; want 1:\n%s", n, log)
	}
	if n := strings.Count(log, `"failed_attempts":3,"dropped":6,"message":"access log: writing again"`); n != 1 {
		t.Errorf("operator log has %d recoveries with 3 failed attempts and 6 drops; want 1:\n%s", n, log)
	}
}

// TestWriteErrorBackoffCapped: against a destination that always fails,
// the ticks between attempts double from 1 up to maxBackoffTicks and
// stay there.
func TestWriteErrorBackoffCapped(t *testing.T) {
	tick, ticked := make(chan time.Time), make(chan struct{})
	l, err := newLogger(&flakyWriter{n: math.MaxInt}, Options{Buffer: 1}, tick, func() { ticked <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for g := 1; g <= maxBackoffTicks; g *= 2 {
		want = append(want, g)
	}
	want = append(want, maxBackoffTicks, maxBackoffTicks)
	var gaps []int
	last, seen := 0, 0
	for i := 1; len(gaps) < len(want); i++ {
		l.Log(&Entry{Status: 500})
		tick <- time.Time{}
		<-ticked
		if a, _ := l.out.(*flakyWriter).state(); a > seen {
			if seen > 0 {
				gaps = append(gaps, i-last)
			}
			last, seen = i, a
		}
	}
	if !slices.Equal(gaps, want) {
		t.Errorf("ticks between attempts: got %v; want %v", gaps, want)
	}
	closeLog(t, l)
}

// BenchmarkLog is one request's share of the access log: rendering its
// line and handing it to the writer (which writes to io.Discard).
//
//	go test -run '^$' -bench Log -benchmem ./accesslog
func BenchmarkLog(b *testing.B) {
	l, err := New(io.Discard, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer closeLog(b, l)
	e := &Entry{Start: time.Now(), Client: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4242},
		Method: []byte("GET"), Host: []byte("http.bench"), Path: []byte("/small"), Proto: ProtoHTTP1, Status: 200,
		BytesOut: 13, Upstream: "127.0.0.1:40000", Route: "http.bench", RequestID: []byte("3f9c2a7e51d04b8c000000000000002a")}
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
}

func TestAppendSeconds(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 999, 843211, 13 * time.Millisecond, time.Second, 2412 * time.Millisecond,
		time.Hour + 1, 36*time.Hour + 123456789} {
		want := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
		if got := string(appendSeconds(nil, d)); got != want {
			t.Errorf("appendSeconds(%v) = %q; want %q", d, got, want)
		}
	}
	if got := string(appendSeconds(nil, -time.Second)); got != "0" {
		t.Errorf("appendSeconds(-1s) = %q; want 0", got)
	}
}

func TestAppendTime(t *testing.T) {
	var l Logger
	base := time.Date(2026, 12, 7, 6, 20, 1, 0, time.UTC)
	for _, tm := range []time.Time{base, base.Add(123456789), base.Add(500 * time.Millisecond), base.Add(time.Second + 1),
		base.In(time.FixedZone("X", 3600)).Add(10)} {
		want := tm.UTC().Format(time.RFC3339Nano)
		if got := string(l.appendTime(nil, tm)); got != want {
			t.Errorf("appendTime(%v) = %q; want %q", tm, got, want)
		}
	}
}
