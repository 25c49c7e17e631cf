package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/proxy"
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

// next waits for the next line (the bound only ends a broken test).
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

// startLogged starts a harness whose proxy writes its access log to the
// returned lines, closed after the proxy has shut down.
func startLogged(t testing.TB, cfg string, o accesslog.Options) (*harness, *logLines) {
	t.Helper()
	al, lines := newAccessLog(t, o)
	return startHarness(t, cfg, func(o *proxy.Options) { o.AccessLog = al }), lines
}

// newAccessLog returns an access log writing to the returned lines,
// closed after the test's later cleanups (the harness's).
func newAccessLog(t testing.TB, o accesslog.Options) (*accesslog.Logger, *logLines) {
	t.Helper()
	lines := &logLines{c: make(chan map[string]any, 1024)}
	al, err := accesslog.New(lines, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs after the harness's own cleanup
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := al.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return al, lines
}

// wantFields checks a log line's fields.
func wantFields(t testing.TB, line map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if fmt.Sprint(line[k]) != fmt.Sprint(w) {
			t.Errorf("log %s = %v; want %v (line %v)", k, line[k], w, line)
		}
	}
}

// TestRequestIDs: an ID is generated, kept or replaced as request_id says,
// and the same one reaches the upstream, the client and the log line.
func TestRequestIDs(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, sent string
		kept            bool
	}{
		{"generated", oneService, "", false},
		{"kept", oneService, "client-id.1", true},
		{"malformed", oneService, "has space", false},
		{"replaced", "request_id = \"replace\"\n" + oneService, "client-id.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, lines := startLogged(t, tc.cfg, accesslog.Options{})
			u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			h.setEndpoints("apps", "app", true, u.addr())
			req, _ := http.NewRequest("GET", "http://"+h.addr+"/p?q=1", nil)
			req.Host = "app.test"
			if tc.sent != "" {
				req.Header.Set("X-Request-Id", tc.sent)
			}
			resp, body, err := do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("got %v, %v; want 200", resp, err)
			}
			id := resp.Header.Get("X-Request-Id")
			if got := u.last.Load().Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
				t.Errorf("upstream got X-Request-Id %q; want [%q]", got, id)
			}
			if tc.kept && id != tc.sent {
				t.Errorf("X-Request-Id = %q; want the client's %q", id, tc.sent)
			}
			if !tc.kept && (len(id) != 32 || id == tc.sent) {
				t.Errorf("X-Request-Id = %q; want a new 32-character one", id)
			}
			if v := resp.Header.Get("X-Agimo-Cold-Start"); v != "" {
				t.Errorf("warm request got X-Agimo-Cold-Start %q; want none", v)
			}
			wantFields(t, lines.next(t), map[string]any{
				"request_id": id, "method": "GET", "host": "app.test", "path": "/p?q=1", "proto": "HTTP/1.1",
				"status": 200, "bytes_in": 0, "bytes_out": len(body), "parked": 0, "upstream": u.addr(),
				"route": "app.test", "cold_start": false, "reason": nil,
			})
		})
	}
}

// TestRequestIDSurvivesPark: a request parked in the lot (no body) or on
// its goroutine (a body) keeps its ID through the park and the replay,
// and its response says how long it was parked.
func TestRequestIDSurvivesPark(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, method, body, sent string
		wantSent                      bool
	}{
		{"lot-generated", oneService, "GET", "", "", false},
		{"lot-kept", oneService, "GET", "", "client-id.2", true},
		{"lot-replaced", "request_id = \"replace\"\n" + oneService, "GET", "", "client-id.3", false},
		{"goroutine-generated", oneService, "POST", "body", "", false},
		{"goroutine-kept", oneService, "POST", "body", "client-id.4", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, lines := startLogged(t, strings.Replace(tc.cfg, `timeout = "2s"`, `timeout = "30s"`, 1), accesslog.Options{})
			u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); io.WriteString(w, "ok") })
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			head := tc.method + " /x HTTP/1.1\r\nHost: app.test\r\n"
			if tc.sent != "" {
				head += "X-Request-Id: " + tc.sent + "\r\n"
			}
			if tc.body != "" {
				head += "Content-Length: " + strconv.Itoa(len(tc.body)) + "\r\n"
			}
			io.WriteString(c, head+"\r\n"+tc.body)
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
			h.setEndpoints("apps", "app", true, u.addr())
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("got %v, %v; want 200", resp, err)
			}
			resp.Body.Close()
			id := resp.Header.Get("X-Request-Id")
			if got := u.last.Load().Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
				t.Errorf("upstream got X-Request-Id %q; want [%q]", got, id)
			}
			if (id == tc.sent) != tc.wantSent || id == "" {
				t.Errorf("X-Request-Id = %q; client sent %q, want kept %v", id, tc.sent, tc.wantSent)
			}
			cs, err := strconv.ParseFloat(resp.Header.Get("X-Agimo-Cold-Start"), 64)
			if err != nil || cs < 0 {
				t.Errorf("X-Agimo-Cold-Start = %q; want seconds parked", resp.Header.Get("X-Agimo-Cold-Start"))
			}
			line := lines.next(t)
			wantFields(t, line, map[string]any{"request_id": id, "status": 200, "cold_start": true,
				"bytes_in": len(tc.body), "upstream": u.addr()})
			if p, _ := line["parked"].(float64); p <= 0 {
				t.Errorf("log parked = %v; want > 0", line["parked"])
			}
		})
	}
}

// TestColdStartHeaderOff: cold_start_header = false leaves the header
// out; the log still says the request was parked.
func TestColdStartHeaderOff(t *testing.T) {
	h, lines := startLogged(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "30s"`, 1)+"cold_start_header = false\n", accesslog.Options{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	res := make(chan *http.Response, 1)
	go func() {
		resp, _, _ := h.get("app.test", "/")
		res <- resp
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", true, u.addr())
	resp := <-res
	if resp == nil || resp.StatusCode != 200 {
		t.Fatalf("got %v; want 200", resp)
	}
	if v, ok := resp.Header["X-Agimo-Cold-Start"]; ok {
		t.Errorf("X-Agimo-Cold-Start = %q; want none (cold_start_header = false)", v)
	}
	wantFields(t, lines.next(t), map[string]any{"status": 200, "cold_start": true})
}

// TestAccessLogOwnAnswers: Agimo's own answers are logged with their
// reason, carry the request ID, and are never sampled out.
func TestAccessLogOwnAnswers(t *testing.T) {
	cfg := strings.Replace(oneService, `timeout = "2s"`, `timeout = "300ms"`, 1)
	h, lines := startLogged(t, cfg, accesslog.Options{Sample: 1e-9})

	// No route: 404.
	resp, _, err := h.get("other.test", "/nothing")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("got %v, %v; want 404", resp, err)
	}
	wantFields(t, lines.next(t), map[string]any{"status": 404, "reason": "no_route", "host": "other.test",
		"path": "/nothing", "request_id": resp.Header.Get("X-Request-Id"), "route": ""})
	if len(resp.Header.Get("X-Request-Id")) != 32 {
		t.Errorf("404 X-Request-Id = %q; want one", resp.Header.Get("X-Request-Id"))
	}

	// Cold, never ready: parked in the lot, then 503 at the timeout.
	resp, _, err = h.get("app.test", "/cold")
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("got %v, %v; want 503", resp, err)
	}
	line := lines.next(t)
	wantFields(t, line, map[string]any{"status": 503, "reason": "park_timeout", "route": "app.test",
		"path": "/cold", "cold_start": true, "request_id": resp.Header.Get("X-Request-Id")})
	if resp.Header.Get("X-Agimo-Cold-Start") == "" || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("503 head %v; want X-Request-Id and X-Agimo-Cold-Start", resp.Header)
	}

	// Cold with a body: parked on its goroutine, then 503.
	req, _ := http.NewRequest("POST", "http://"+h.addr+"/cold", strings.NewReader("b"))
	req.Host = "app.test"
	resp, _, err = do(req)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("got %v, %v; want 503", resp, err)
	}
	wantFields(t, lines.next(t), map[string]any{"status": 503, "reason": "park_timeout", "method": "POST",
		"request_id": resp.Header.Get("X-Request-Id")})

	// A malformed request: 400, still logged.
	got, _ := h.rawExchange("GET / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 300*time.Millisecond)
	if !strings.HasPrefix(got, "HTTP/1.1 400") || !strings.Contains(got, "X-Request-Id: ") {
		t.Errorf("got %q; want 400 with X-Request-Id", got)
	}
	wantFields(t, lines.next(t), map[string]any{"status": 400, "reason": "bad_request"})
}

// TestAccessLogWebSocket: a tunnel is one line at its end, with the ID
// the upgrade request and the 101 carried.
func TestAccessLogWebSocket(t *testing.T) {
	h, lines := startLogged(t, oneService, accesslog.Options{})
	u := wsUpstream(t, wsEcho)
	h.setEndpoints("apps", "app", true, u.addr())
	c, resp, err := h.wsDialer().Dial("ws://app.test/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	id := resp.Header.Get("X-Request-Id")
	if got := u.last.Load().Header.Get("X-Request-Id"); id == "" || got != id {
		t.Errorf("101 X-Request-Id %q, upstream got %q; want the same", id, got)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "hello" {
		t.Fatalf("echo %q, %v", m, err)
	}
	c.Close()
	line := lines.next(t)
	wantFields(t, line, map[string]any{"status": 101, "request_id": id, "path": "/ws", "route": "app.test", "upstream": u.addr()})
	if in, _ := line["bytes_in"].(float64); in < 5 {
		t.Errorf("bytes_in = %v; want the frame's", line["bytes_in"])
	}
	if out, _ := line["bytes_out"].(float64); out < 5 {
		t.Errorf("bytes_out = %v; want the echo's", line["bytes_out"])
	}
}

// TestAccessLogClientGoneInLot: a client that resets its connection while
// its request waits in the lot gets its line, 499 as nginx logs it.
func TestAccessLogClientGoneInLot(t *testing.T) {
	h, lines := startLogged(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "60s"`, 1), accesslog.Options{})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /gone?x=1 HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: gone-1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	c.(*net.TCPConn).SetLinger(0) // reset, not FIN: a half-close stays parked
	c.Close()
	line := lines.next(t)
	wantFields(t, line, map[string]any{"status": 499, "reason": "client_gone", "route": "app.test", "host": "app.test",
		"path": "/gone?x=1", "method": "GET", "request_id": "gone-1", "cold_start": true, "bytes_out": 0})
	if p, _ := line["parked"].(float64); p <= 0 {
		t.Errorf("log parked = %v; want > 0", line["parked"])
	}
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}
