package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A connection parked in the lot keeps its place in the HTTP/1.1 stream:
// a request pipelined behind the parked one is answered after it, and the
// connection stays usable for keep-alive requests after the release.
func TestLotPipelinedAndKeepAlive(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "30s"`, 1))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: app.test\r\n\r\nGET /second HTTP/1.1\r\nHost: app.test\r\n\r\n")
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", true, up.addr())

	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	read := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response for %s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, want)
		}
	}
	read("/first")
	read("/second")
	io.WriteString(c, "GET /third HTTP/1.1\r\nHost: app.test\r\n\r\n")
	read("/third")
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 3 {
		t.Errorf("requests_total = %v; want 3 (a replayed request is not counted twice)", got)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// A request released from the lot that finds its service cold again (the
// endpoint flapped) parks again, and is answered once ready for good.
func TestLotReparksAfterFlap(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "30s"`, 1))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	done := make(chan string, 1)
	go func() {
		resp, body, err := h.get("app.test", "/")
		if err != nil {
			done <- err.Error()
			return
		}
		done <- resp.Status + " " + body
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	// Ready and unready again in quick succession.
	h.setEndpoints("apps", "app", true, up.addr())
	h.setEndpoints("apps", "app", false, up.addr())
	select {
	case got := <-done:
		// Released in the ready window: fine, as long as it succeeded.
		if got != "200 OK ok" {
			t.Fatalf("got %q; want 200 OK ok", got)
		}
		return
	case <-time.After(300 * time.Millisecond):
	}
	h.setEndpoints("apps", "app", true, up.addr())
	if got := <-done; got != "200 OK ok" {
		t.Fatalf("got %q; want 200 OK ok", got)
	}
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 1 {
		t.Errorf("requests_total = %v; want 1", got)
	}
}
