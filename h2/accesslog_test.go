package h2_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/route"
)

// logLines is an access log destination that hands each line, decoded,
// to a channel.
type logLines struct{ c chan map[string]any }

func (l *logLines) Write(p []byte) (int, error) {
	for _, s := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m = map[string]any{"undecodable": s}
		}
		l.c <- m
	}
	return len(p), nil
}

func (l *logLines) next(t testing.TB) map[string]any {
	t.Helper()
	select {
	case m := <-l.c:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no access log line within 10s")
		return nil
	}
}

// startLogged starts a harness with an access log, closed after it.
func startLogged(t *testing.T, cfg string) (*harness, *logLines) {
	t.Helper()
	al, lines := newAccessLog(t)
	return startHarnessWith(t, cfg, harnessOpts{accessLog: al}), lines
}

// newAccessLog returns an access log writing to the returned lines,
// closed after the test's later cleanups (the harness's).
func newAccessLog(t *testing.T) (*accesslog.Logger, *logLines) {
	t.Helper()
	lines := &logLines{c: make(chan map[string]any, 1024)}
	al, err := accesslog.New(lines, accesslog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := al.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return al, lines
}

func wantFields(t testing.TB, line map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if fmt.Sprint(line[k]) != fmt.Sprint(w) {
			t.Errorf("log %s = %v; want %v (line %v)", k, line[k], w, line)
		}
	}
}

// TestStreamRequestID: a stream's ID (generated, or the client's kept)
// reaches the HTTP/1.1 upstream, the client and the stream's log line.
func TestStreamRequestID(t *testing.T) {
	for _, sent := range []string{"", "client-id.7"} {
		t.Run("sent="+sent, func(t *testing.T) {
			h, lines := startLogged(t, oneService)
			u := newH1Upstream(t)
			h.setEndpoints("apps", "app", "", true, u.Listener.Addr().String())
			var hdr []string
			if sent != "" {
				hdr = []string{"X-Request-Id", sent}
			}
			r := get(t, h2cClient(t, h.addr), "http://app.test/s?q=1", hdr...)
			id := r.resp.Header.Get("X-Request-Id")
			if got := u.got.Load().Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id || id == "" {
				t.Errorf("upstream got X-Request-Id %q; client %q", got, id)
			}
			if sent != "" && id != sent {
				t.Errorf("X-Request-Id = %q; want the client's %q", id, sent)
			}
			if v := r.resp.Header.Get("X-Agimo-Cold-Start"); v != "" {
				t.Errorf("warm stream got X-Agimo-Cold-Start %q", v)
			}
			wantFields(t, lines.next(t), map[string]any{"request_id": id, "proto": "HTTP/2", "method": "GET",
				"host": "app.test", "path": "/s?q=1", "status": 201, "bytes_out": len(r.body),
				"upstream": u.Listener.Addr().String(), "route": "app.test", "cold_start": false})
		})
	}
}

// TestStreamParked: a stream parked until its h2c upstream is ready keeps
// its ID, gets X-Agimo-Cold-Start and is logged as a cold start; the
// upstream's own X-Request-Id does not reach the client.
func TestStreamParked(t *testing.T) {
	h, lines := startLogged(t, oneService)
	app := startH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "upstream-own") // Agimo's wins
		w.Header().Set("X-Seen-Id", r.Header.Get("X-Request-Id"))
		io.WriteString(w, "ok")
	})
	req, _ := http.NewRequest(http.MethodGet, "http://app.test/cold", nil)
	done := send(h2cClient(t, h.addr), req)
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", route.AppProtocolH2C, true, app)
	r := <-done
	if r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("got %v; want 200", r)
	}
	ids := r.resp.Header.Values("X-Request-Id")
	if len(ids) != 1 || ids[0] != r.resp.Header.Get("X-Seen-Id") {
		t.Errorf("X-Request-Id %q, upstream saw %q; want one, the same", ids, r.resp.Header.Get("X-Seen-Id"))
	}
	if _, err := strconv.ParseFloat(r.resp.Header.Get("X-Agimo-Cold-Start"), 64); err != nil {
		t.Errorf("X-Agimo-Cold-Start = %q; want seconds parked", r.resp.Header.Get("X-Agimo-Cold-Start"))
	}
	line := lines.next(t)
	wantFields(t, line, map[string]any{"request_id": r.resp.Header.Get("X-Seen-Id"), "status": 200, "cold_start": true,
		"upstream": app})
	if p, _ := line["parked"].(float64); p <= 0 {
		t.Errorf("log parked = %v; want > 0", line["parked"])
	}
}

// TestStreamOwnAnswers: a stream Agimo answers itself is logged with its
// reason and carries its ID; cold_start_header = false drops the header.
func TestStreamOwnAnswers(t *testing.T) {
	cfg := strings.Replace(oneService, `timeout = "10s"`, `timeout = "300ms"`, 1) + "cold_start_header = false\n"
	h, lines := startLogged(t, cfg)
	c := h2cClient(t, h.addr)
	r := get(t, c, "http://other.test/x")
	if r.resp.StatusCode != 404 || r.resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("got %d %v; want 404 with X-Request-Id", r.resp.StatusCode, r.resp.Header)
	}
	wantFields(t, lines.next(t), map[string]any{"status": 404, "reason": "no_route", "proto": "HTTP/2",
		"request_id": r.resp.Header.Get("X-Request-Id")})
	r = get(t, c, "http://app.test/cold")
	if r.resp.StatusCode != 503 {
		t.Errorf("got %d; want 503", r.resp.StatusCode)
	}
	if v, ok := r.resp.Header["X-Agimo-Cold-Start"]; ok {
		t.Errorf("X-Agimo-Cold-Start = %q; want none (cold_start_header = false)", v)
	}
	wantFields(t, lines.next(t), map[string]any{"status": 503, "reason": "park_timeout", "cold_start": true,
		"request_id": r.resp.Header.Get("X-Request-Id")})
}

// TestStreamResetWhileParkedLogged: a stream the client resets while it
// is parked (RST_STREAM, RFC 9113 §6.4) gets its line, 499 as nginx logs
// a client that left, with the time it was parked.
func TestStreamResetWhileParkedLogged(t *testing.T) {
	h, lines := startLogged(t, oneService)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://app.test/gone", nil)
	req.Header.Set("X-Request-Id", "gone-2")
	done := send(h2cClient(t, h.addr), req)
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	cancel()
	if r := <-done; r.err == nil {
		t.Fatalf("got %d; want the request to fail", r.resp.StatusCode)
	}
	line := lines.next(t)
	wantFields(t, line, map[string]any{"status": 499, "reason": "client_gone", "route": "app.test", "path": "/gone",
		"proto": "HTTP/2", "request_id": "gone-2", "cold_start": true})
	if p, _ := line["parked"].(float64); p <= 0 {
		t.Errorf("log parked = %v; want > 0", line["parked"])
	}
}
