package proxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// limitedService is oneService with max_connections = 3 and the given
// park timeout.
func limitedService(timeout string) string {
	return strings.Replace(oneService, `timeout = "2s"`, "timeout = \""+timeout+"\"\nmax_connections = 3", 1)
}

// expectRefused checks that a connection past max_connections is answered
// 503 with Retry-After at once, and closed.
func expectRefused(t *testing.T, h *harness) {
	t.Helper()
	res := advSend(t, h.addr, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", 5*time.Second)
	if len(res.Responses) != 1 || res.Responses[0].Status != 503 || res.Responses[0].Header.Get("Retry-After") == "" || !res.Closed {
		t.Errorf("connection past max_connections: %v; want one 503 with Retry-After, then closed", res)
	}
}

// dialSend opens a client connection and writes req on it.
func dialSend(t *testing.T, h *harness, req string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// readStatus reads one response off c and returns its status.
func readStatus(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func reset(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// max_connections counts every open client connection however it is held
// (served, parked in the lot, parked with a body, tunnelled), past it the
// answer is 503 with Retry-After at once, and the count returns to zero
// however the connections end (issue 10).
func TestMaxConnectionsCountsEveryConnection(t *testing.T) {
	const (
		get  = "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"
		post = "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\n\r\nbody"
	)
	for _, tc := range []struct {
		name    string
		timeout string
		// hold opens three connections held one way, end ends them.
		hold func(t *testing.T, h *harness) []net.Conn
		end  func(t *testing.T, h *harness, cs []net.Conn)
	}{
		{name: "keep-alive", timeout: "30s",
			hold: func(t *testing.T, h *harness) []net.Conn {
				h.setEndpoints("apps", "app", true, newRecUpstream(t).addr())
				var cs []net.Conn
				for range 3 {
					c := dialSend(t, h, "")
					for {
						io.WriteString(c, get)
						if readStatus(t, c) == 200 { // the informer may lag
							break
						}
					}
					cs = append(cs, c)
				}
				return cs
			},
			end: func(t *testing.T, h *harness, cs []net.Conn) {
				for _, c := range cs {
					c.Close()
				}
			}},
		{name: "parked-released", timeout: "30s", hold: parkThree(get),
			end: func(t *testing.T, h *harness, cs []net.Conn) {
				h.setEndpoints("apps", "app", true, newRecUpstream(t).addr())
				for _, c := range cs {
					if s := readStatus(t, c); s != 200 {
						t.Errorf("released: %d; want 200", s)
					}
					c.Close()
				}
			}},
		{name: "parked-timeout", timeout: "2s", hold: parkThree(get),
			end: func(t *testing.T, h *harness, cs []net.Conn) {
				for _, c := range cs {
					if s := readStatus(t, c); s != 503 {
						t.Errorf("timed out: %d; want 503", s)
					}
				}
			}},
		{name: "parked-reset", timeout: "30s", hold: parkThree(get), end: resetAll},
		{name: "parked-body-released", timeout: "30s", hold: parkThree(post),
			end: func(t *testing.T, h *harness, cs []net.Conn) {
				h.setEndpoints("apps", "app", true, newRecUpstream(t).addr())
				for _, c := range cs {
					if s := readStatus(t, c); s != 200 {
						t.Errorf("released: %d; want 200", s)
					}
					c.Close()
				}
			}},
		{name: "parked-body-reset", timeout: "30s", hold: parkThree(post), end: resetAll},
		{name: "tunnel", timeout: "30s",
			hold: func(t *testing.T, h *harness) []net.Conn {
				h.setEndpoints("apps", "app", true, wsUpstream(t, wsEcho).addr())
				var cs []net.Conn
				for range 3 {
					cs = append(cs, h.dialWS(t, "/").NetConn())
				}
				h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 3)
				return cs
			},
			end: func(t *testing.T, h *harness, cs []net.Conn) {
				for _, c := range cs {
					c.Close()
				}
				h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 0)
			}},
		{name: "shutdown", timeout: "30s",
			hold: func(t *testing.T, h *harness) []net.Conn {
				cs := []net.Conn{dialSend(t, h, get), dialSend(t, h, post)}
				h.waitMetric(`agimo_parked_requests{host="app.test"}`, 2)
				ws := wsUpstream(t, wsEcho)
				h.setEndpoints("apps", "app", true, ws.addr())
				cs = append(cs, h.dialWS(t, "/").NetConn())
				return cs
			},
			end: func(t *testing.T, h *harness, cs []net.Conn) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := h.proxy.Shutdown(ctx); err != nil {
					t.Errorf("shutdown: %v", err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, limitedService(tc.timeout))
			cs := tc.hold(t, h)
			h.waitMetric(`agimo_open_connections`, 3)
			expectRefused(t, h)
			tc.end(t, h, cs)
			h.waitMetric(`agimo_open_connections`, 0)
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
		})
	}
}

// parkThree parks three requests req on the cold service.
func parkThree(req string) func(t *testing.T, h *harness) []net.Conn {
	return func(t *testing.T, h *harness) []net.Conn {
		var cs []net.Conn
		for range 3 {
			cs = append(cs, dialSend(t, h, req))
		}
		h.waitMetric(`agimo_parked_requests{host="app.test"}`, 3)
		return cs
	}
}

func resetAll(t *testing.T, h *harness, cs []net.Conn) {
	for _, c := range cs {
		reset(c)
	}
}

// A parked request released while the server is at max_connections is
// served: the replay of its connection counts as the connection it was
// all along, not as a new one to refuse, and its active gauge ends
// (issue 10: it got fasthttp's bare 503, and the gauge stayed up).
func TestReleaseAtMaxConnections(t *testing.T) {
	h := startHarness(t, strings.Replace(limitedService("30s"), "max_connections = 3", "max_connections = 2", 1))
	parked := dialSend(t, h, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	idle := dialSend(t, h, "") // a client yet to send its head
	h.waitMetric(`agimo_open_connections`, 2)
	// One more, kept open across the release.
	third := dialSend(t, h, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	h.setEndpoints("apps", "app", true, newRecUpstream(t).addr())
	if s := readStatus(t, parked); s != 200 {
		t.Errorf("released at max_connections: %d; want 200", s)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	if res := advRead(third, 5*time.Second); len(res.Responses) != 1 || res.Responses[0].Status != 503 || res.Responses[0].Header.Get("Retry-After") == "" {
		t.Errorf("connection past max_connections: %v; want one 503 with Retry-After", res)
	}
	parked.Close()
	idle.Close()
	h.waitMetric(`agimo_open_connections`, 0)
}
