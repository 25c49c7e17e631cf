package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Trailer fields pass through both ways, minus hop-by-hop ones and those
// not allowed in a trailer section (RFC 9110 §6.5.1, §6.5.2); Trailer
// itself is end-to-end (RFC 9110 §6.6.2). Issue 10 item 9.
func TestResponseTrailers(t *testing.T) {
	h, u := advSetup(t, oneService)
	for _, tc := range []struct {
		name, answer string
		body         string
		trailer      http.Header // what the client must find in the trailer section
		announced    []string    // the Trailer field the client must get, in any order
		gone         []string    // fields that must not reach the client at all
		upgrade      bool        // the request asks for a WebSocket (relayRefusal answers)
	}{
		{name: "grpc-and-checksum",
			answer:    "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTrailer: grpc-status, grpc-message\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\nX-Checksum: sha256=abc\r\n\r\n",
			body:      "hello",
			trailer:   http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {"fine"}, "X-Checksum": {"sha256=abc"}},
			announced: []string{"Grpc-Status", "Grpc-Message", "X-Checksum"}},
		{name: "unannounced",
			answer:  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Late: 1\r\n\r\n",
			body:    "ok",
			trailer: http.Header{"X-Late": {"1"}}},
		// A field the upstream marked hop-by-hop stays on its hop, in a
		// trailer section as in a header section (RFC 9110 §7.6.1).
		{name: "connection-listed",
			answer:    "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nTrailer: X-Hop, X-End\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Hop: secret\r\nX-End: e\r\n\r\n",
			body:      "ok",
			trailer:   http.Header{"X-End": {"e"}},
			announced: []string{"X-End"},
			gone:      []string{"X-Hop"}},
		// A declared trailer fasthttp refuses is dropped; the rest, and
		// the body, go through (it was a 502).
		{name: "declared-set-cookie",
			answer:    "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie, X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\nX-Checksum: c\r\n\r\n",
			body:      "body",
			trailer:   http.Header{"X-Checksum": {"c"}},
			announced: []string{"X-Checksum"},
			gone:      []string{"Set-Cookie"}},
		{name: "declared-only-forbidden",
			answer: "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie\r\nContent-Length: 4\r\n\r\nbody",
			body:   "body",
			gone:   []string{"Set-Cookie"}},
		// A forbidden field sent in the trailer section is dropped too,
		// without cutting the response short.
		{name: "sent-set-cookie",
			answer:    "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie, X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\nSet-Cookie: s=1\r\nX-Checksum: c\r\n\r\n",
			body:      "body",
			trailer:   http.Header{"X-Checksum": {"c"}},
			announced: []string{"X-Checksum"},
			gone:      []string{"Set-Cookie"}},
		// An upgrade refused with a chunked answer: the relay by hand.
		{name: "upgrade-refused", upgrade: true,
			answer:    "HTTP/1.1 403 Forbidden\r\nConnection: X-Hop\r\nTrailer: X-Checksum, Set-Cookie, X-Hop\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnope\r\n0\r\nX-Checksum: c\r\nX-Hop: h\r\n\r\n",
			body:      "nope",
			trailer:   http.Header{"X-Checksum": {"c"}},
			announced: []string{"X-Checksum"},
			gone:      []string{"Set-Cookie", "X-Hop"}},
		// A fixed-length response has no trailer section; its Trailer
		// field still reaches the client, as any end-to-end field does.
		{name: "fixed-length-announcing",
			answer:    "HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nContent-Length: 4\r\n\r\nbody",
			body:      "body",
			announced: []string{"X-Checksum"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			u.setRespond(func(int, *http.Request, []byte) string { return tc.answer })
			req := "GET /t HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\nConnection: close\r\n\r\n"
			status := 200
			if tc.upgrade {
				req = "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
				status = 403
			}
			res := advSend(t, h.addr, req, 2*time.Second)
			if len(res.Responses) != 1 {
				t.Fatalf("got %v; want one response", res)
			}
			r := res.Responses[0]
			if r.Status != status || r.Body != tc.body || r.BodyErr != nil {
				t.Fatalf("got %d %q (body error %v); want %d %q: %v", r.Status, r.Body, r.BodyErr, status, tc.body, res)
			}
			trailer := advTrailer(t, res.Raw)
			for k, want := range tc.trailer {
				if got := trailer[k]; strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("trailer %s = %q; want %q: %q", k, got, want, res.Raw)
				}
			}
			for k := range trailer {
				if tc.trailer.Get(k) == "" {
					t.Errorf("trailer %s = %q reached the client; want only %v", k, trailer[k], tc.trailer)
				}
			}
			// net/http moves Trailer out of the header: read the head.
			_, fields := advHead(res.Raw)
			var announced []string
			for _, v := range advValues(fields, "Trailer") {
				for _, n := range strings.Split(v, ",") {
					announced = append(announced, http.CanonicalHeaderKey(strings.TrimSpace(n)))
				}
			}
			if !sameSet(announced, tc.announced) {
				t.Errorf("Trailer announced %q; want %q", announced, tc.announced)
			}
			for _, k := range tc.gone {
				if strings.Contains(strings.ToLower(res.Raw), strings.ToLower(k)+":") {
					t.Errorf("%s reached the client: %q", k, res.Raw)
				}
			}
		})
	}
}

// advTrailer parses the trailer section of the one chunked response in
// raw with net/http, which keeps trailer fields apart from the header.
func advTrailer(t *testing.T, raw string) http.Header {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	out := http.Header{}
	for k, v := range resp.Trailer {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// Request trailers reach the upstream, minus fields not allowed in a
// trailer section and hop-by-hop ones.
func TestRequestTrailers(t *testing.T) {
	h, u := advSetup(t, oneService)
	for _, tc := range []struct {
		name, req string
		body      string
		trailer   http.Header
		announced []string
		gone      []string
	}{
		{name: "checksum",
			req:       advPost("Trailer: X-Checksum\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n", advChunk("abc")+"0\r\nX-Checksum: sha256=abc\r\n\r\n"),
			body:      "abc",
			trailer:   http.Header{"X-Checksum": {"sha256=abc"}},
			announced: []string{"X-Checksum"}},
		{name: "unannounced",
			req:     advPost("Transfer-Encoding: chunked\r\nConnection: close\r\n", advChunk("abc")+"0\r\nX-Late: 1\r\n\r\n"),
			body:    "abc",
			trailer: http.Header{"X-Late": {"1"}}},
		{name: "connection-listed",
			req:       advPost("Connection: X-Hop, close\r\nTrailer: X-Hop, X-End\r\nTransfer-Encoding: chunked\r\n", advChunk("abc")+"0\r\nX-Hop: secret\r\nX-End: e\r\n\r\n"),
			body:      "abc",
			trailer:   http.Header{"X-End": {"e"}},
			announced: []string{"X-End"},
			gone:      []string{"X-Hop"}},
		// Without a body there is no trailer section to announce.
		{name: "bodiless-announcing",
			req:  advPost("Trailer: X-Checksum\r\nContent-Length: 0\r\nConnection: close\r\n", ""),
			gone: []string{"Trailer", "Transfer-Encoding"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, tc.req, 2*time.Second)
			u.settle(10 * time.Millisecond)
			if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
				t.Fatalf("got %v; want the upstream's 200", res)
			}
			reqs, errs := u.requests()
			if len(reqs) != 1 || len(errs) != 0 {
				t.Fatalf("upstream got %d requests, errors %v%s; want 1", len(reqs), errs, u.dump())
			}
			r := reqs[0]
			if r.Body != tc.body {
				t.Errorf("forwarded body %q; want %q", r.Body, tc.body)
			}
			for k, want := range tc.trailer {
				if got := r.Trailer[k]; strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("forwarded trailer %s = %q; want %q%s", k, got, want, u.dump())
				}
			}
			for k, v := range r.Trailer {
				if len(v) > 0 && tc.trailer.Get(k) == "" {
					t.Errorf("forwarded trailer %s = %q; want only %v", k, v, tc.trailer)
				}
			}
			var announced []string
			for _, v := range advValues(lastHead(u), "Trailer") {
				for _, n := range strings.Split(v, ",") {
					announced = append(announced, http.CanonicalHeaderKey(strings.TrimSpace(n)))
				}
			}
			if !sameSet(announced, tc.announced) {
				t.Errorf("forwarded Trailer %q; want %q%s", announced, tc.announced, u.dump())
			}
			for _, k := range tc.gone {
				for _, raw := range u.received() {
					if strings.Contains(strings.ToLower(string(raw)), strings.ToLower(k)+":") {
						t.Errorf("%s reached the upstream%s", k, u.dump())
					}
				}
			}
		})
	}
}
