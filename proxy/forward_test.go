package proxy_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Routing: unknown host → 404, missing or invalid Host → 400; nothing is
// sent upstream and each answer names its reason.
func TestRouting(t *testing.T) {
	h := startHarness(t, oneService)
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	h.setEndpoints("apps", "app", true, up.addr())
	for _, tc := range []struct {
		name, req  string
		wantStatus string
	}{
		{"exact", "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", "200"},
		{"case-port-dot", "GET / HTTP/1.1\r\nHost: APP.Test.:8080\r\n\r\n", "200"},
		{"unknown", "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n", "404"},
		{"missing", "GET / HTTP/1.1\r\n\r\n", "400"},
		{"empty", "GET / HTTP/1.1\r\nHost: \r\n\r\n", "400"},
		{"invalid", "GET / HTTP/1.1\r\nHost: app.test/evil\r\n\r\n", "400"},
		{"userinfo", "GET / HTTP/1.1\r\nHost: user@app.test\r\n\r\n", "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := h.rawExchange(tc.req+"", 300*time.Millisecond)
			if !strings.HasPrefix(got, "HTTP/1.1 "+tc.wantStatus) {
				t.Fatalf("got %q; want status %s", firstLine(got), tc.wantStatus)
			}
		})
	}
	if n := len(up.received()); n != 2 {
		t.Errorf("upstream got %d requests; want 2 (the routed ones)", n)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// Forwarding hygiene (issue 2): hop-by-hop headers and those named in
// Connection are removed both ways, X-Forwarded-* are set (and a client's
// spoofed X-Forwarded-For is replaced), the request target is forwarded
// byte-exact, and no header is invented.
func TestForwardingHygiene(t *testing.T) {
	h := startHarness(t, oneService)
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Up-Secret\r\nX-Up-Secret: s\r\nKeep-Alive: timeout=5\r\nX-App: a\r\n\r\nok")
	h.setEndpoints("apps", "app", true, up.addr())

	req := "GET /a//b/../c%2F?q=1&x=%zz HTTP/1.1\r\nHost: App.Test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 300\r\nProxy-Authorization: p\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Forwarded-For: 6.6.6.6\r\nX-Custom: v\r\n\r\n"
	resp, _ := h.rawExchange(req, 300*time.Millisecond)
	heads := up.received()
	if len(heads) != 1 {
		t.Fatalf("upstream got %d requests; want 1", len(heads))
	}
	fwd := heads[0]
	if want := "GET /a//b/../c%2F?q=1&x=%zz HTTP/1.1\r\n"; !strings.HasPrefix(fwd, want) {
		t.Errorf("request line = %q; want %q", firstLine(fwd), want)
	}
	hdr := parseHeaders(fwd)
	for _, k := range []string{"X-Secret", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade", "Connection"} {
		if v, ok := hdr[k]; ok {
			t.Errorf("forwarded hop-by-hop header %s: %q", k, v)
		}
	}
	for k, want := range map[string]string{
		"X-Custom": "v", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "App.Test", "Host": "App.Test",
	} {
		if got := hdr[k]; got != want {
			t.Errorf("forwarded %s = %q; want %q", k, got, want)
		}
	}
	for k := range hdr {
		switch k {
		case "X-Custom", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Host", "X-Request-Id":
		default:
			t.Errorf("forwarded header %s that the client did not send", k)
		}
	}
	rh := parseHeaders(resp)
	for _, k := range []string{"X-Up-Secret", "Keep-Alive"} {
		if _, ok := rh[k]; ok {
			t.Errorf("response kept hop-by-hop header %s", k)
		}
	}
	if rh["X-App"] != "a" {
		t.Errorf("response X-App = %q; want %q", rh["X-App"], "a")
	}
	for _, k := range []string{"Server", "Date", "Content-Type"} {
		if _, ok := rh[k]; ok {
			t.Errorf("response has invented header %s", k)
		}
	}
}

// parseHeaders maps canonical header names to values of a raw head.
func parseHeaders(raw string) map[string]string {
	m := map[string]string{}
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		m[http.CanonicalHeaderKey(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return m
}

// A response sent without reading the whole request body closes the
// connection: the unread body must never be parsed as a next request
// (request smuggling, issue 2).
func TestUnreadBodyClosesConnection(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "100ms"`, 1))
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
	for _, tc := range []struct{ name, req, want string }{
		{"unknown-host", "POST / HTTP/1.1\r\nHost: nope.test\r\nContent-Length: 1000\r\n\r\n", "404"},
		{"park-timeout", "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\n\r\n", "503"},
		{"chunked-unknown-host", "POST / HTTP/1.1\r\nHost: nope.test\r\nTransfer-Encoding: chunked\r\n\r\n" + "3e8\r\n", "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The "body" is a complete request: if the proxy kept the
			// connection and read on, it would answer it as a second one.
			body := smuggled + strings.Repeat("x", 1000-len(smuggled))
			got, closed := h.rawExchange(tc.req+body, time.Second)
			if !strings.HasPrefix(got, "HTTP/1.1 "+tc.want) {
				t.Fatalf("got %q; want %s", firstLine(got), tc.want)
			}
			if n := strings.Count(got, "HTTP/1.1 "); n != 1 {
				t.Errorf("got %d responses; want 1: %q", n, got)
			}
			if !closed {
				t.Errorf("connection left open after a response to an unread body")
			}
			if !strings.Contains(strings.ToLower(got), "connection: close") {
				t.Errorf("response lacks Connection: close")
			}
		})
	}
}

// Metric values after a known sequence: 3 routed requests (2 served, 1
// timed out), 1 unknown host; the unknown host is not counted.
func TestMetricsAfterKnownSequence(t *testing.T) {
	cfg := oneService + `
[[services]]
host = "cold.test"
type = "sts"
namespace = "apps"
name = "cold"
service_name = "cold"
service_port = 8080
timeout = "50ms"
`
	h := startHarness(t, cfg)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h.setEndpoints("apps", "app", true, up.addr())
	for _, host := range []string{"app.test", "app.test", "cold.test", "unknown.test"} {
		if _, _, err := h.get(host, "/"); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]float64{
		`agimo_requests_total{host="app.test"}`:                         2,
		`agimo_requests_total{host="cold.test"}`:                        1,
		`agimo_active_requests{host="app.test"}`:                        0,
		`agimo_active_requests{host="cold.test"}`:                       0,
		`agimo_park_timeouts_total{host="cold.test"}`:                   1,
		`agimo_park_duration_seconds_count{host="cold.test"}`:           0,
		`agimo_upstream_errors_total{host="app.test",kind="refused"}`:   0,
		`agimo_requests_total{host="unknown.test"}`:                     -1,
		`agimo_park_duration_seconds_bucket{host="app.test",le="+Inf"}`: 0,
	} {
		h.waitMetric(name, want)
	}
}

// An endpoint that refuses connections right after being announced ready
// is retried until it listens, instead of answering 502.
func TestRefusedEndpointIsRetried(t *testing.T) {
	h := startHarness(t, oneService)
	// Reserve a port, then free it: connections to it are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h.setEndpoints("apps", "app", true, addr)

	done := make(chan string, 1)
	go func() {
		resp, body, err := h.get("app.test", "/")
		if err != nil {
			done <- err.Error()
			return
		}
		done <- resp.Status + " " + body
	}()
	h.waitMetric(`agimo_upstream_errors_total{host="app.test",kind="refused"}`, 1)
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "late") })}
	go srv.Serve(ln)
	defer srv.Close()
	if got := <-done; got != "200 OK late" {
		t.Fatalf("got %q; want %q", got, "200 OK late")
	}
}

// Upstream failures map to status codes: a silent upstream → 504, a
// connection closed before any response → 502, a refusing one past the
// deadline → 503.
func TestUpstreamFailures(t *testing.T) {
	silent := listenFunc(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	hangup := listenFunc(t, func(c net.Conn) { c.Read(make([]byte, 1024)); c.Close() })
	garbage := listenFunc(t, func(c net.Conn) { c.Read(make([]byte, 1024)); io.WriteString(c, "NOT HTTP\r\n\r\n"); c.Close() })
	cfg := strings.Replace(oneService, `timeout = "2s"`, "timeout = \"300ms\"\nupstream_timeout = \"200ms\"", 1)
	for _, tc := range []struct {
		name, addr string
		want       int
		kind       string
	}{
		{"silent", silent, 504, "timeout"},
		{"hangup", hangup, 502, "closed"},
		{"garbage", garbage, 502, "protocol"},
		{"refused", refusedAddr(t), 503, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, cfg)
			h.setEndpoints("apps", "app", true, tc.addr)
			req, _ := http.NewRequest("POST", "http://"+h.addr+"/", strings.NewReader("body"))
			req.Host = "app.test"
			resp, _, err := do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d; want %d", resp.StatusCode, tc.want)
			}
			if got := h.metric(`agimo_upstream_errors_total{host="app.test",kind="` + tc.kind + `"}`); got < 1 {
				t.Errorf("%s errors = %v; want ≥ 1", tc.kind, got)
			}
		})
	}
}

func listenFunc(t *testing.T, f func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); f(c) }()
		}
	}()
	return ln.Addr().String()
}

func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}
