package proxy_test

import (
	"strings"
	"testing"
	"time"
)

// Content-Length together with Transfer-Encoding is answered 400, the
// connection closed and nothing sent upstream, whether the service is
// ready or cold (README, "Proxy behaviour"; RFC 9112 §6.1 lets a server
// reject such a message, and an edge proxy should: it is where a front
// proxy and an upstream disagree about where the body ends). Issue 10
// item 10.
var clteRequests = []struct{ name, req string }{
	{"cl-then-te", advPost("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"+smuggled)},
	{"te-then-cl", advPost("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"+smuggled)},
	{"cl-shorter", advPost("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", advChunk("hello")+"0\r\n\r\n")},
	{"cl-zero", advPost("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", advChunk("hello")+"0\r\n\r\n")},
	{"name-case", advPost("content-length: 5\r\ntransfer-encoding: chunked\r\n", "0\r\n\r\n"+smuggled)},
	{"get", "GET /g HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled},
	{"http10", "POST /f HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + advChunk("abc") + "0\r\n\r\n" + smuggled},
}

func TestContentLengthWithTransferEncodingRejected(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		h, u := advSetup(t, oneService)
		for _, tc := range clteRequests {
			t.Run(tc.name, func(t *testing.T) {
				u.reset()
				res := advSend(t, h.addr, tc.req, 2*time.Second)
				u.settle(10 * time.Millisecond)
				checkCLTERejected(t, res)
				if n := u.totalBytes(); n != 0 {
					t.Errorf("upstream received%s; want nothing", u.dump())
				}
			})
		}
	})
	t.Run("cold", func(t *testing.T) {
		h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "30s"`, 1))
		for _, tc := range clteRequests {
			t.Run(tc.name, func(t *testing.T) {
				checkCLTERejected(t, advSend(t, h.addr, tc.req, 2*time.Second))
			})
		}
		// Nothing was parked to reach the upstream once it is ready: the
		// first request it receives is the one sent after.
		u := newRecUpstream(t)
		h.setEndpoints("apps", "app", true, u.addr())
		res := advSend(t, h.addr, "GET /after HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 2*time.Second)
		if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
			t.Fatalf("request after: got %v; want 200", res)
		}
		u.settle(10 * time.Millisecond)
		if reqs, errs := u.requests(); len(reqs) != 1 || len(errs) != 0 || reqs[0].Target != "/after" {
			t.Errorf("upstream received%s; want only GET /after", u.dump())
		}
		h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
		h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	})
}

func checkCLTERejected(t *testing.T, res advResult) {
	t.Helper()
	if len(res.Responses) != 1 || res.Responses[0].Status != 400 {
		t.Errorf("got %v; want one 400", res)
	}
	if !res.Closed {
		t.Errorf("connection left open after the 400; want it closed")
	}
}
