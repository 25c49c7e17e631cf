package proxy_test

import (
	"bytes"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A request that parks must reach the upstream exactly as it would have
// had the service been ready: same Host, same X-Forwarded-*, same fields
// removed (issue 10 item 3). Bodiless requests park in the lot and are
// replayed from their raw head; requests with a body park on their
// goroutine: both are compared byte for byte with the same request sent
// to the ready service.
func TestParkedForwardedAsReady(t *testing.T) {
	const switched = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	upgrade := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, tc := range []struct {
		name, req string
		answer    string // the upstream's answer; "" for okResponse
	}{
		{name: "absolute-conflicting-host", req: "GET http://app.test/x HTTP/1.1\r\nHost: admin.internal\r\n\r\n"},
		{name: "absolute-https-port-spoofed", req: "GET HTTPS://App.Test:8443/x?q=1 HTTP/1.1\r\nHost: admin.internal\r\nX-Forwarded-Host: evil.test\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"},
		{name: "absolute-hop-by-hop", req: "GET http://app.test/h HTTP/1.1\r\nHost: admin.internal\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: p\r\nUpgrade: h2c\r\nX_Under: u\r\nX-Custom: v\r\n\r\n"},
		{name: "absolute-http10", req: "GET http://app.test/old HTTP/1.0\r\nHost: admin.internal\r\n\r\n"},
		{name: "origin-form", req: "GET /plain?a=%2F HTTP/1.1\r\nHost: APP.test.\r\nX-Forwarded-Host: evil.test\r\nConnection: X-Secret\r\nX-Secret: s\r\n\r\n"},
		{name: "websocket-absolute", req: "GET http://app.test/ws HTTP/1.1\r\nHost: admin.internal\r\n" + upgrade + "\r\n", answer: switched},
		{name: "websocket-origin", req: "GET /ws HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-Host: evil.test\r\n" + upgrade + "\r\n", answer: switched},
		// A request with a body parks on its goroutine (park.go).
		{name: "body-absolute", req: "POST http://app.test/post HTTP/1.1\r\nHost: admin.internal\r\nContent-Length: 4\r\nConnection: X-Secret\r\nX-Secret: s\r\n\r\nbody"},
		{name: "chunked-body-absolute", req: "POST http://app.test/post HTTP/1.1\r\nHost: admin.internal\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "30s"`, 1))
			u := newRecUpstream(t)
			if tc.answer != "" {
				u.setRespond(func(int, *http.Request, []byte) string { return tc.answer })
			}
			// Cold: the request parks, then readiness releases it.
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(tc.req)); err != nil {
				t.Fatal(err)
			}
			h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
			h.setEndpoints("apps", "app", true, u.addr())
			u.waitAny(10 * time.Second)
			parkedRes := advRead(c, 500*time.Millisecond)
			u.settle(10 * time.Millisecond)
			parked := bytes.Join(u.received(), nil)

			// Ready: the same request is forwarded at once.
			u.reset()
			readyRes := advSend(t, h.addr, tc.req, 500*time.Millisecond)
			u.settle(10 * time.Millisecond)
			ready := bytes.Join(u.received(), nil)

			if len(ready) == 0 {
				t.Fatalf("ready: upstream received nothing; client got %v", readyRes)
			}
			// Each request gets its own X-Request-Id (reqid).
			ids := regexp.MustCompile(`X-Request-Id: [0-9a-f]{32}`)
			parked = ids.ReplaceAll(parked, []byte("X-Request-Id: ID"))
			ready = ids.ReplaceAll(ready, []byte("X-Request-Id: ID"))
			if !bytes.Equal(parked, ready) {
				t.Errorf("upstream received, parked:\n  %q\nready:\n  %q", parked, ready)
			}
			if len(parkedRes.Responses) == 0 || len(readyRes.Responses) == 0 ||
				parkedRes.Responses[0].Status != readyRes.Responses[0].Status {
				t.Errorf("client got, parked: %v; ready: %v", parkedRes, readyRes)
			}
			// The forwarded Host is the one routed by, never the client's
			// conflicting Host (RFC 9112 §3.2.2).
			for _, f := range advValues(firstHeadFields(ready), "Host") {
				if strings.EqualFold(f, "admin.internal") {
					t.Errorf("forwarded Host %q; want the target's authority", f)
				}
			}
		})
	}
}

// firstHeadFields returns the fields of the first request head in raw.
func firstHeadFields(raw []byte) []advField {
	_, fields := advHead(string(raw))
	return fields
}
