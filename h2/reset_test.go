package h2_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

// A client that resets its streams while they are parked (RST_STREAM
// CANCEL, RFC 9113 §6.4), or closes the whole connection, ends their
// parks: the parked and active gauges return to 0 and each stream's
// goroutine ends. A connection whose streams were reset stays usable.
func TestClientResetWhileParked(t *testing.T) {
	h := startHarness(t, oneService)
	c := h2cClient(t, h.addr)
	for _, tc := range []struct {
		name      string
		closeConn bool // else cancel the requests
	}{
		{"stream reset", false},
		{"connection closed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, closeConns := c, func() {}
			if tc.closeConn {
				cl, closeConns = h2cClientConns(t, h.addr)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var streams []<-chan result
			for range 3 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://app.test/", nil)
				streams = append(streams, send(cl, req))
			}
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 3)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 3)
			if tc.closeConn {
				closeConns()
			} else {
				cancel()
			}
			for _, s := range streams {
				r := <-s
				switch {
				case r.err == nil:
					t.Errorf("got %d; want the request to fail", r.resp.StatusCode)
				case !tc.closeConn && !errors.Is(r.err, context.Canceled):
					t.Errorf("got %v; want context.Canceled", r.err)
				}
			}
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
			waitNoHandlers(t)
		})
	}
	up := newH1Upstream(t)
	h.setEndpoints("apps", "app", "", true, up.addr())
	if r := get(t, c, "http://app.test/after"); r.resp.StatusCode != http.StatusCreated {
		t.Errorf("after the resets: got %d; want 201", r.resp.StatusCode)
	}
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 7 {
		t.Errorf("requests_total = %v; want 7", got)
	}
	if got := h.metric(`agimo_park_timeouts_total{host="app.test"}`); got != 0 {
		t.Errorf("park timeouts = %v; want 0", got)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}
