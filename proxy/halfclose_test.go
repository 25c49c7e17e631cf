package proxy_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// A client that half-closes after its request (RFC 9112 §9.6) has not
// withdrawn it: parked, it is served on release, or answered 503 at the
// park timeout, as the ready path serves it at once; both park paths (the
// lot for bodiless requests, the goroutine park for requests with a body)
// agree (issue 10).
func TestHalfClosedClientParked(t *testing.T) {
	const (
		get  = "GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n"
		post = "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello"
	)
	for _, tc := range []struct {
		name, req string
		state     string // "ready", "released" or "timeout"
		want      int
	}{
		{"get-ready", get, "ready", 200},
		{"get-released", get, "released", 200},
		{"get-timeout", get, "timeout", 503},
		{"post-ready", post, "ready", 200},
		{"post-released", post, "released", 200},
		{"post-timeout", post, "timeout", 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			timeout := "30s"
			if tc.state == "timeout" {
				timeout = "500ms"
			}
			cfg := strings.Replace(oneService, `timeout = "2s"`, `timeout = "`+timeout+`"`, 1)
			var h *harness
			var u *recUpstream
			if tc.state == "ready" {
				h, u = advSetup(t, cfg)
			} else {
				h, u = startHarness(t, cfg), newRecUpstream(t)
			}
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if tc.state != "ready" {
				h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
			}
			if tc.state == "released" {
				h.setEndpoints("apps", "app", true, u.addr())
			}
			res := advRead(c, 10*time.Second)
			if len(res.Responses) != 1 || res.Responses[0].Status != tc.want || !res.Closed {
				t.Fatalf("got %v; want one %d, then the connection closed", res, tc.want)
			}
			if tc.want == 503 && res.Responses[0].Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
			wantBody := ""
			if tc.req == post {
				wantBody = "hello"
			}
			if reqs, _ := u.requests(); tc.want == 200 && (len(reqs) != 1 || reqs[0].Target != "/x" || reqs[0].Body != wantBody) {
				t.Errorf("upstream got %d requests:%v; want the one request /x with body %q", len(reqs), u.dump(), wantBody)
			}
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
			h.waitMetric(`agimo_open_connections`, 0)
		})
	}
}
