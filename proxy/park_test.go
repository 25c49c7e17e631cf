package proxy_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// A request parked on an unready service is released when an
// EndpointSlice turns ready, and gets the upstream's bytes.
func TestParkedRequestReleasedOnReadiness(t *testing.T) {
	h := startHarness(t, oneService)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from app") })

	type result struct {
		body   string
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, body, err := h.get("app.test", "/x")
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{body, resp.StatusCode, nil}
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("upstream hits while parked = %d; want 0", n)
	}
	h.setEndpoints("apps", "app", true, up.addr())
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.status != 200 || r.body != "hello from app" {
		t.Fatalf("got %d %q; want 200 %q", r.status, r.body, "hello from app")
	}
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	if got := h.metric(`agimo_park_duration_seconds_count{host="app.test"}`); got != 1 {
		t.Errorf("park duration count = %v; want 1", got)
	}
}

// A park that outlives the service's timeout answers 503 with Retry-After,
// and nothing reaches the upstream.
func TestParkTimeout(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "150ms"`, 1))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	// Endpoints exist but are not ready.
	h.setEndpoints("apps", "app", false, up.addr())
	start := time.Now()
	resp, _, err := h.get("app.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 {
		t.Fatalf("status = %d; want 503", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Errorf("no Retry-After header")
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("answered after %v; want at least the 150ms timeout", el)
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("upstream hits = %d; want 0", n)
	}
	if got := h.metric(`agimo_park_timeouts_total{host="app.test"}`); got != 1 {
		t.Errorf("park timeouts = %v; want 1", got)
	}
}

// 1,000 parked requests are all released by one readiness event.
func TestThousandParkedReleasedByOneEvent(t *testing.T) {
	const n = 1000
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "60s"`, 1))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := h.get("app.test", "/")
			switch {
			case err != nil:
				errs <- err.Error()
			case resp.StatusCode != 200 || body != "ok":
				errs <- resp.Status + " " + body
			}
		}()
	}
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, n)
	h.setEndpoints("apps", "app", true, up.addr())
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("request failed: %s", e)
	}
	if got := up.hits.Load(); got != n {
		t.Errorf("upstream hits = %d; want %d", got, n)
	}
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// A client that resets its connection while parked frees its slot: the
// parked and active gauges, and its connection, drop back although the
// service never became ready. (A half-close does not: halfclose_test.go.)
func TestClientLeavingWhileParked(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "60s"`, 1))
	for _, tc := range []struct{ name, req string }{
		{"get", "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		// The unread body is pending in the socket: the close must still be seen.
		{"post-with-pending-body", "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 60000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 1)
			c.(*net.TCPConn).SetLinger(0) // reset, not FIN
			c.Close()
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
			h.waitMetric(`agimo_open_connections`, 0)
		})
	}
}

// Shutdown answers parked requests with 503 and Retry-After at once.
func TestShutdownAnswersParked(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "60s"`, 1))
	done := make(chan *http.Response, 1)
	go func() {
		resp, _, err := h.get("app.test", "/")
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	go h.proxy.Shutdown(t.Context())
	select {
	case resp := <-done:
		if resp == nil {
			return
		}
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("got %d Retry-After=%q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("parked request not answered at shutdown")
	}
}
