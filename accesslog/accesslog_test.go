package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
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

func closeLog(t *testing.T, l *Logger) {
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
