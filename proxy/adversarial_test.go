package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agimo/agimo/stats"
)

// Forwarding under adversarial peers (issue 6): Expect: 100-continue,
// pipelining, upstream keep-alive races, malformed upstream responses,
// slow and greedy clients and upstreams. The harness is rawharness_test.go.

// readInterim reads from br until a 100 Continue (true) or a final
// response head starts (false), or wait passes (false).
func waitContinue(c net.Conn, br *bufio.Reader, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	line, err := br.Peek(len("HTTP/1.1 100"))
	if err != nil || string(line) != "HTTP/1.1 100" {
		return false
	}
	resp, err := http.ReadResponse(br, nil)
	return err == nil && resp.StatusCode == 100
}

// Expect: 100-continue (RFC 9110 §10.1.1): a client that waits for 100
// before its body gets it (or the final answer), whether the service is
// ready or parked, and the body reaches the upstream exactly once. An
// upstream that itself answers 100 Continue (Go's net/http does, as the
// forwarded request still carries Expect) must not produce a second
// interim or a confused final response.
func TestExpectContinue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		parked  bool
		goUp    bool // a net/http upstream, which sends its own 100
		wantHit int
	}{
		{name: "ready", wantHit: 1},
		{name: "ready-upstream-sends-100", goUp: true, wantHit: 1},
		{name: "parked", parked: true, wantHit: 1},
		{name: "parked-upstream-sends-100", parked: true, goUp: true, wantHit: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, oneService)
			var got atomic.Value
			var hits atomic.Int64
			var addr string
			if tc.goUp {
				up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					hits.Add(1)
					got.Store(string(b))
					io.WriteString(w, "ok")
				})
				addr = up.addr()
			} else {
				u := newRecUpstream(t)
				u.setRespond(func(_ int, _ *http.Request, body []byte) string {
					hits.Add(1)
					got.Store(string(body))
					return okResponse
				})
				addr = u.addr()
			}
			if !tc.parked {
				h.setEndpoints("apps", "app", true, addr)
				probe := advSend(t, h.addr, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 3*time.Second)
				if len(probe.Responses) != 1 {
					t.Fatalf("probe: %v", probe)
				}
				hits.Store(0)
			}
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "POST /e HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
			if tc.parked {
				time.AfterFunc(200*time.Millisecond, func() { h.setEndpoints("apps", "app", true, addr) })
			}
			br := bufio.NewReader(c)
			// Like curl: wait a while for 100, then send the body anyway.
			sawContinue := waitContinue(c, br, time.Second)
			io.WriteString(c, "hello")
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read final response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == 100 {
				t.Fatalf("a second 100 Continue after the body; want the final response")
			}
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("got %d %q; want 200 \"ok\"", resp.StatusCode, body)
			}
			if n := hits.Load(); n != int64(tc.wantHit) {
				t.Errorf("upstream got %d requests; want %d", n, tc.wantHit)
			}
			if b, _ := got.Load().(string); b != "hello" {
				t.Errorf("upstream got body %q; want %q", b, "hello")
			}
			// Nothing may follow: no stray interim response.
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if extra, _ := io.ReadAll(br); len(extra) > 0 {
				t.Errorf("bytes after the final response: %q", extra)
			}
			t.Logf("saw 100 Continue: %v", sawContinue)
		})
	}
}

// Pipelined requests (RFC 9112 §9.3.2) are answered in order, even when
// an earlier one is slower upstream, and bodies and HEAD responses do not
// shift the framing of the ones after.
func TestPipeliningOrder(t *testing.T) {
	h, u := advSetup(t, oneService)
	u.setRespond(func(_ int, r *http.Request, body []byte) string {
		// The first is the slowest: answers must still come in order.
		switch r.URL.Path {
		case "/1":
			time.Sleep(150 * time.Millisecond)
		case "/2":
			time.Sleep(50 * time.Millisecond)
		}
		b := r.Method + " " + r.URL.Path + " " + string(body)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	})
	for _, tc := range []struct {
		name, req string
		methods   []string
		want      []string
	}{
		{name: "three-gets",
			req:  "GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /3 HTTP/1.1\r\nHost: app.test\r\n\r\n",
			want: []string{"GET /1 ", "GET /2 ", "GET /3 "}},
		{name: "post-in-the-middle",
			req:  "GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nPOST /2 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhelloGET /3 HTTP/1.1\r\nHost: app.test\r\n\r\n",
			want: []string{"GET /1 ", "POST /2 hello", "GET /3 "}},
		{name: "chunked-in-the-middle",
			req:  "GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nPOST /2 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: app.test\r\n\r\n",
			want: []string{"GET /1 ", "POST /2 hello", "GET /3 "}},
		{name: "head-in-the-middle", methods: []string{"GET", "HEAD", "GET"},
			req:  "GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /3 HTTP/1.1\r\nHost: app.test\r\n\r\n",
			want: []string{"GET /1 ", "", "GET /3 "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := advSend(t, h.addr, tc.req, 500*time.Millisecond, tc.methods...)
			if res.ParseErr != nil || len(res.Responses) != len(tc.want) {
				t.Fatalf("got %v; want %d responses", res, len(tc.want))
			}
			for i, r := range res.Responses {
				if r.Status != 200 || r.Body != tc.want[i] {
					t.Errorf("response %d = %d %q; want 200 %q", i+1, r.Status, r.Body, tc.want[i])
				}
			}
		})
	}
}

// An upstream that closes a keep-alive connection right after answering
// (a race every pooled proxy meets: Node's keepAliveTimeout, a restarting
// pod) must never make the proxy send a request with a body twice. A
// bodiless GET may be retried on a fresh connection; a POST that may have
// reached the upstream may not (RFC 9110 §9.2.2).
func TestUpstreamKeepAliveRace(t *testing.T) {
	t.Run("close-after-response", func(t *testing.T) {
		h, u := advSetup(t, oneService)
		var seen sync.Map // request id → count
		u.setServe(func(c net.Conn, r io.Reader) {
			// One request per connection; answer as if keep-alive, then close.
			req, err := http.ReadRequest(bufio.NewReader(r))
			if err != nil {
				return
			}
			io.ReadAll(req.Body)
			id := req.Header.Get("X-Id")
			n, _ := seen.LoadOrStore(id, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			io.WriteString(c, okResponse)
		})
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		// c is redialled below; close whichever is last, or the proxy's
		// shutdown waits 5 s for a connection that never sent a request
		// (fasthttp, like net/http, gives a new connection that grace).
		defer func() { c.Close() }()
		br := bufio.NewReader(c)
		statuses := map[string]int{}
		for i := range 6 {
			method := "GET"
			body := ""
			if i%2 == 1 {
				method, body = "POST", "hello"
			}
			id := fmt.Sprintf("%s-%d", method, i)
			fmt.Fprintf(c, "%s /r HTTP/1.1\r\nHost: app.test\r\nX-Id: %s\r\nContent-Length: %d\r\n\r\n%s", method, id, len(body), body)
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: read response: %v", id, err)
			}
			io.ReadAll(resp.Body)
			statuses[id] = resp.StatusCode
			if resp.Close {
				c.Close()
				if c, err = net.Dial("tcp", h.addr); err != nil {
					t.Fatal(err)
				}
				br = bufio.NewReader(c)
			}
			// Let the upstream's FIN arrive before the next request.
			time.Sleep(20 * time.Millisecond)
		}
		for id, s := range statuses {
			v, _ := seen.Load(id)
			n := int64(0)
			if v != nil {
				n = v.(*atomic.Int64).Load()
			}
			switch {
			case strings.HasPrefix(id, "POST") && n > 1:
				t.Errorf("%s reached the upstream %d times; a POST must never be sent twice", id, n)
			case strings.HasPrefix(id, "GET") && s != 200:
				t.Errorf("%s: got %d; want 200 (a bodiless GET may be retried on a fresh connection)", id, s)
			case s != 200 && s != 502:
				t.Errorf("%s: got %d; want 200 or 502", id, s)
			case s == 200 && n != 1:
				t.Errorf("%s: got 200 but the upstream saw it %d times", id, n)
			}
		}
		t.Logf("statuses after upstream closes: %v", statuses)
	})
	t.Run("post-after-idle-close-succeeds", func(t *testing.T) {
		// A connection the upstream closed while idle is detectably dead
		// before anything is written: using it for a POST is avoidable.
		h, u := advSetup(t, oneService)
		u.setServe(func(c net.Conn, r io.Reader) {
			req, err := http.ReadRequest(bufio.NewReader(r))
			if err != nil {
				return
			}
			io.ReadAll(req.Body)
			io.WriteString(c, okResponse)
		})
		// A GET leaves a pooled connection that the upstream closes.
		if res := advSend(t, h.addr, advGet(""), 300*time.Millisecond); len(res.Responses) != 1 || res.Responses[0].Status != 200 {
			t.Fatalf("GET: %v; want 200", res)
		}
		time.Sleep(20 * time.Millisecond)
		res := advSend(t, h.addr, advPost("Content-Length: 5\r\n", "hello"), 300*time.Millisecond)
		if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
			t.Fatalf("got %v; want 200", res)
		}
	})
	t.Run("close-after-request", func(t *testing.T) {
		// The upstream reads the whole request, then closes without an
		// answer: it may have acted on it. A POST is answered 502 and was
		// sent once; a GET may be retried, a bounded number of times.
		h, u := advSetup(t, oneService)
		u.setServe(func(c net.Conn, r io.Reader) {
			req, err := http.ReadRequest(bufio.NewReader(r))
			if err == nil {
				io.ReadAll(req.Body)
			}
		})
		for _, tc := range []struct {
			name, req string
			max       int
		}{
			{"post-body", advPost("Content-Length: 5\r\n", "hello"), 1},
			{"post-chunked", advPost("Transfer-Encoding: chunked\r\n", advChunk("hello")+"0\r\n\r\n"), 1},
			{"post-empty", advPost("Content-Length: 0\r\n", ""), 1},
			{"patch", "PATCH /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello", 1},
			{"get", "GET /g HTTP/1.1\r\nHost: app.test\r\n\r\n", 5},
		} {
			t.Run(tc.name, func(t *testing.T) {
				u.settle(10 * time.Millisecond)
				u.reset()
				res := advSend(t, h.addr, tc.req, 300*time.Millisecond)
				u.settle(20 * time.Millisecond)
				if len(res.Responses) != 1 || res.Responses[0].Status != 502 {
					t.Errorf("got %v; want one 502", res)
				}
				reqs, _ := u.requests()
				if len(reqs) == 0 || len(reqs) > tc.max {
					t.Errorf("upstream received the request %d times; want 1..%d%s", len(reqs), tc.max, u.dump())
				}
			})
		}
	})
}

// A malformed upstream response becomes 502 (RFC 9110 §15.6.3); a body
// that fails midway ends the client's response early and closes the
// connection. The client never receives a response that looks complete but
// is not what the upstream sent, and nothing the upstream sent after a
// bodiless response leaks to the client as a next response.
func TestMalformedUpstreamResponses(t *testing.T) {
	const (
		bad       = "502"       // a clean 502
		truncated = "truncated" // head relayed, body cut, connection closed
		relayed   = "relayed"   // a well-formed response with the expected body
	)
	cfg := strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nupstream_timeout = \"1s\"", 1)
	h, u := advSetup(t, cfg)
	for _, tc := range []struct {
		name     string
		response string   // what the upstream writes, then it closes
		allow    []string // acceptable outcomes
		body     string   // for relayed
	}{
		{name: "not-http", response: "garbage\r\n\r\n", allow: []string{bad}},
		{name: "bad-status-code", response: "HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok", allow: []string{bad}},
		{name: "two-digit-status", response: "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", allow: []string{bad}},
		{name: "bad-version", response: "HTTP/9.9 200 OK\r\nContent-Length: 2\r\n\r\nok", allow: []string{bad, relayed}, body: "ok"},
		{name: "header-without-colon", response: "HTTP/1.1 200 OK\r\nFoo bar\r\nContent-Length: 2\r\n\r\nok", allow: []string{bad}},
		{name: "space-before-colon", response: "HTTP/1.1 200 OK\r\nX-Foo : bar\r\nContent-Length: 2\r\n\r\nok", allow: []string{bad, relayed}, body: "ok"},
		{name: "nul-in-header", response: "HTTP/1.1 200 OK\r\nX-Foo: a\x00b\r\nContent-Length: 2\r\n\r\nok", allow: []string{bad, relayed}, body: "ok"},
		{name: "obs-fold", response: "HTTP/1.1 200 OK\r\nX-Foo: a\r\n b\r\nContent-Length: 2\r\n\r\nok", allow: []string{bad, relayed}, body: "ok"},
		{name: "conflicting-content-length", response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk", allow: []string{bad}},
		{name: "content-length-list", response: "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nokk", allow: []string{bad}},
		{name: "content-length-not-a-number", response: "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok", allow: []string{bad}},
		{name: "content-length-negative", response: "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", allow: []string{bad}},
		{name: "cl-and-te", response: "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", allow: []string{bad, relayed}, body: "ok"},
		{name: "unknown-transfer-coding", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", allow: []string{bad, relayed, truncated}, body: "ok"},
		{name: "bad-chunk-size", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", allow: []string{bad, truncated}},
		{name: "chunk-without-crlf", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", allow: []string{bad, truncated}},
		{name: "truncated-content-length", response: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", allow: []string{bad, truncated}},
		{name: "truncated-chunked", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", allow: []string{bad, truncated}},
		{name: "truncated-head", response: "HTTP/1.1 200 OK\r\nContent-Le", allow: []string{bad}},
		{name: "empty", response: "", allow: []string{bad}},
		{name: "close-delimited", response: "HTTP/1.1 200 OK\r\n\r\nall of it", allow: []string{relayed}, body: "all of it"},
		{name: "http10-close-delimited", response: "HTTP/1.0 200 OK\r\n\r\nall of it", allow: []string{relayed}, body: "all of it"},
		{name: "interim-then-final", response: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", allow: []string{relayed}, body: "ok"},
		{name: "unsolicited-101", response: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw bytes", allow: []string{bad}},
		{name: "head-too-big", response: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\nContent-Length: 2\r\n\r\nok", allow: []string{bad}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.setServe(func(c net.Conn, r io.Reader) {
				if req, err := http.ReadRequest(bufio.NewReader(r)); err == nil {
					io.ReadAll(req.Body)
				}
				io.WriteString(c, tc.response)
			})
			// Connection: close lets the exchange end without an idle wait;
			// a fabricated end of body is still a complete response.
			res := advSend(t, h.addr, advGet("Connection: close\r\n"), time.Second)
			outcome := classify(res, tc.body)
			ok := false
			for _, a := range tc.allow {
				ok = ok || a == outcome
			}
			if !ok {
				t.Errorf("outcome %q; want one of %q: %v", outcome, tc.allow, res)
			}
			t.Logf("outcome %s", outcome)
			if outcome == relayed {
				// RFC 9112 §5.1, §5.2; RFC 9110 §5.5: what a proxy relays
				// is itself well-formed.
				_, fields := advHead(res.Raw)
				for _, f := range fields {
					if !advValidToken(f.Name) || !advValidValue(f.Value) {
						t.Errorf("relayed an invalid field %q: %q", f.Name, f.Value)
					}
				}
			}
		})
	}
}

// classify names what a client got for one request.
func classify(res advResult, wantBody string) string {
	var final []advResponse
	for _, r := range res.Responses {
		if r.Status >= 200 {
			final = append(final, r)
		}
	}
	switch {
	case len(final) == 1 && final[0].Status == 502 && final[0].BodyErr == nil && res.ParseErr == nil:
		return "502"
	case len(final) == 1 && final[0].BodyErr != nil && res.Closed:
		return "truncated"
	case len(final) == 1 && final[0].Status == 200 && final[0].BodyErr == nil && res.ParseErr == nil && final[0].Body == wantBody:
		return "relayed"
	case len(final) == 0 && res.Closed:
		// Nothing, or a head cut short, then a close: the client knows it
		// got no complete response.
		return "truncated"
	}
	return fmt.Sprintf("other (%d final responses, parse error %v, closed %v)", len(final), res.ParseErr, res.Closed)
}

// Bodiless responses (HEAD, 204, 304) to which a broken upstream attaches
// a body: those bytes must not reach the client, where they would be read
// as the start of the next response (response splitting).
func TestUpstreamBodyOnBodilessResponse(t *testing.T) {
	for _, tc := range []struct{ name, method, response string }{
		{"head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nHTTP/1.1 200 OK\r\nX-Spliced: 1\r\n\r\n"},
		{"204", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 33\r\n\r\nHTTP/1.1 200 OK\r\nX-Spliced: 1\r\n\r\n"},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nX-Spliced: 1\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, u := advSetup(t, oneService)
			u.setRespond(func(n int, r *http.Request, _ []byte) string {
				if r.URL.Path == "/first" {
					return tc.response
				}
				return okResponse
			})
			req := tc.method + " /first HTTP/1.1\r\nHost: app.test\r\n\r\nGET /second HTTP/1.1\r\nHost: app.test\r\n\r\n"
			res := advSend(t, h.addr, req, 500*time.Millisecond, tc.method, "GET")
			if strings.Contains(res.Raw, "X-Spliced") {
				t.Errorf("the upstream's extra bytes reached the client: %v", res)
			}
			if res.ParseErr != nil || len(res.Responses) == 0 {
				t.Fatalf("got %v; want well-formed responses", res)
			}
			for i, r := range res.Responses[1:] {
				if r.Status != 200 && r.Status != 502 {
					t.Errorf("response %d: %d; want 200 (or 502 if the connection was poisoned)", i+2, r.Status)
				}
			}
		})
	}
}

// Slowloris: a client that trickles its head one byte every 100ms is cut
// off after the header timeout, without reaching the upstream. The timeout
// is the config key client_header_timeout (an assumption: nginx's name).
func TestSlowlorisHeaders(t *testing.T) {
	cfg := strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nclient_header_timeout = \"500ms\"", 1)
	h := startHarness(t, cfg)
	u := newRecUpstream(t)
	h.setEndpoints("apps", "app", true, u.addr())
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, c)
		closed <- time.Since(start)
	}()
	head := "GET / HTTP/1.1\r\nHost: app.test\r\n" + strings.Repeat("X-Slow: aaaaaaaaaa\r\n", 100)
	for i := 0; i < len(head); i++ {
		if _, err := c.Write([]byte{head[i]}); err != nil {
			break // closed by the proxy
		}
		select {
		case d := <-closed:
			if d > 2*time.Second {
				t.Errorf("closed after %v; want about 500ms", d)
			}
			if u.totalBytes() != 0 {
				t.Errorf("upstream received%s", u.dump())
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("connection still open after %v of one byte per 100ms; want it closed after client_header_timeout", time.Since(start))
		}
	}
	select {
	case d := <-closed:
		t.Logf("closed after %v", d)
	case <-time.After(2 * time.Second):
		t.Errorf("connection not closed")
	}
}

// A client that does not read a 64 MiB response must not make the proxy
// buffer it: backpressure reaches the upstream, and the proxy's heap stays
// far below the body size. Afterwards the client gets every byte.
func TestSlowReaderMemoryBounded(t *testing.T) {
	const size = 64 << 20
	h, u := advSetup(t, oneService)
	var written atomic.Int64
	u.setServe(func(c net.Conn, r io.Reader) {
		req, err := http.ReadRequest(bufio.NewReader(r))
		if err != nil {
			return
		}
		io.ReadAll(req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		buf := make([]byte, 32<<10)
		for i := range buf {
			buf[i] = byte('a' + i%26)
		}
		for left := size; left > 0; left -= len(buf) {
			n, err := c.Write(buf[:min(left, len(buf))])
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	runtime.GC()
	var before, during runtime.MemStats
	runtime.ReadMemStats(&before)

	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n")
	// Read nothing for a while: the proxy must stall, not buffer.
	time.Sleep(1500 * time.Millisecond)
	runtime.ReadMemStats(&during)
	grew := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MiB while the client read nothing; want far less than the 64 MiB body", grew>>20)
	}
	if w := written.Load(); w > size/2 {
		t.Errorf("upstream wrote %d MiB while the client read nothing; want backpressure", w>>20)
	}
	t.Logf("while stalled: heap +%d KiB, upstream wrote %d KiB", grew>>10, written.Load()>>10)

	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("read %d bytes, %v; want %d", n, err, size)
	}
}

// An upstream that accepts and never answers gets 504 after
// upstream_timeout (nothing else is sent to the client before); one that
// stalls in the middle of its body cuts the client's response short.
func TestUpstreamNeverAnswers(t *testing.T) {
	cfg := strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nupstream_timeout = \"300ms\"", 1)
	for _, tc := range []struct {
		name  string
		serve func(c net.Conn, r io.Reader)
		req   string
		want  string // "504" or "truncated"
	}{
		{name: "post-reads-never-answers", req: advPost("Content-Length: 5\r\n", "hello"), want: "504", serve: func(c net.Conn, r io.Reader) { io.Copy(io.Discard, r) }},
		// A timeout is not a reason to resend: the upstream may be working
		// on it, and the client would wait several timeouts.
		{name: "get-reads-never-answers", req: advGet(""), want: "504", serve: func(c net.Conn, r io.Reader) { io.Copy(io.Discard, r) }},
		{name: "head-reads-never-answers", req: "HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n", want: "504", serve: func(c net.Conn, r io.Reader) { io.Copy(io.Discard, r) }},
		{name: "never-reads", req: advPost("Content-Length: 5\r\n", "hello"), want: "504", serve: func(c net.Conn, r io.Reader) { time.Sleep(time.Second) }},
		{name: "stalls-mid-body", req: advGet(""), want: "truncated", serve: func(c net.Conn, r io.Reader) {
			http.ReadRequest(bufio.NewReader(r))
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
			io.Copy(io.Discard, r) // until the proxy gives up
		}},
		{name: "stalls-mid-chunked", req: advGet(""), want: "truncated", serve: func(c net.Conn, r io.Reader) {
			http.ReadRequest(bufio.NewReader(r))
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			io.Copy(io.Discard, r) // until the proxy gives up
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, u := advSetup(t, cfg)
			u.setServe(tc.serve)
			if tc.want == "504" {
				c, err := net.Dial("tcp", h.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				start := time.Now()
				io.WriteString(c, tc.req)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: strings.Fields(tc.req)[0]})
				d := time.Since(start)
				if err != nil || resp.StatusCode != 504 {
					t.Fatalf("got %v, %v; want 504", resp, err)
				}
				if d < 250*time.Millisecond || d > 1500*time.Millisecond {
					t.Errorf("504 after %v; want about upstream_timeout (300ms)", d)
				}
				u.settle(10 * time.Millisecond)
				if n := u.accepts.Load(); n != 1 {
					t.Errorf("upstream got %d connections; want 1 (no resend after a timeout)", n)
				}
				return
			}
			res := advSend(t, h.addr, tc.req, 2*time.Second)
			switch tc.want {
			case "truncated":
				if got := classify(res, ""); got != "truncated" {
					t.Errorf("got %v (%s); want the body cut short and the connection closed", res, got)
				}
			}
		})
	}
}

// The metrics listener answers promptly while the proxy listener is busy
// with slow clients, parked requests and silent upstreams.
func TestMetricsResponsiveUnderLoad(t *testing.T) {
	cfg := strings.Replace(oneService, `timeout = "2s"`, "timeout = \"5s\"\nupstream_timeout = \"5s\"", 1) + `
[[services]]
host = "cold.test"
type = "deployment"
namespace = "apps"
name = "cold"
service_name = "cold"
service_port = 80
`
	h := startHarness(t, cfg)
	silent := newRecUpstream(t)
	silent.setServe(func(c net.Conn, r io.Reader) { io.Copy(io.Discard, r) })
	h.setEndpoints("apps", "app", true, silent.addr())
	admin := httptest.NewServer(stats.AdminHandler(h.set, func() bool { return true }))
	defer admin.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	load := func(n int, f func(c net.Conn)) {
		for range n {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				go func() { <-ctx.Done(); c.Close() }()
				f(c)
			}()
		}
	}
	// Slowloris heads.
	load(100, func(c net.Conn) {
		head := "GET / HTTP/1.1\r\nHost: app.test\r\n" + strings.Repeat("X-Slow: a\r\n", 1000)
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := c.Write([]byte{head[i%len(head)]}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	// Parked requests on a cold service, and requests to a silent upstream.
	load(100, func(c net.Conn) {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: cold.test\r\n\r\n")
		io.Copy(io.Discard, c)
	})
	load(100, func(c net.Conn) {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
		io.Copy(io.Discard, c)
	})
	h.waitMetric(`agimo_parked_requests{host="cold.test"}`, 100)

	cl := &http.Client{Timeout: 2 * time.Second}
	var worst time.Duration
	for i := range 30 {
		path := []string{"/metrics", "/healthz", "/readyz", "/"}[i%4]
		start := time.Now()
		resp, err := cl.Get(admin.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d; want 200", path, resp.StatusCode)
		}
		worst = max(worst, time.Since(start))
		time.Sleep(20 * time.Millisecond)
	}
	if worst > time.Second {
		t.Errorf("slowest admin answer took %v; want well under 1s", worst)
	}
	t.Logf("slowest admin answer: %v", worst)
}

// Endpoints flapping ready/unready while POSTs arrive: each request is
// answered 200 or, if the service stayed unready past its timeout, 503
// with Retry-After; never 502 or 504; and no request reaches the upstream
// twice (issue 6, Faults).
func TestFlappingEndpointsUnderLoad(t *testing.T) {
	cfg := strings.Replace(oneService, `timeout = "2s"`, `timeout = "1s"`, 1)
	h := startHarness(t, cfg)
	var mu sync.Mutex
	seen := map[string]int{}
	u := newRecUpstream(t)
	u.setRespond(func(_ int, r *http.Request, _ []byte) string {
		mu.Lock()
		seen[r.Header.Get("X-Id")]++
		mu.Unlock()
		return okResponse
	})
	h.setEndpoints("apps", "app", true, u.addr())
	stop := make(chan struct{})
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		ready := false
		for {
			select {
			case <-stop:
				h.setEndpoints("apps", "app", true, u.addr())
				return
			case <-time.After(15 * time.Millisecond):
			}
			h.setEndpoints("apps", "app", ready, u.addr())
			ready = !ready
		}
	}()
	var wg sync.WaitGroup
	var mu2 sync.Mutex
	statuses := map[int]int{}
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 10 * time.Millisecond)
			req, _ := http.NewRequest("POST", "http://"+h.addr+"/", strings.NewReader("body"))
			req.Host = "app.test"
			req.Header.Set("X-Id", fmt.Sprint(i))
			resp, _, err := do(req)
			mu2.Lock()
			defer mu2.Unlock()
			if err != nil {
				statuses[-1]++
				return
			}
			statuses[resp.StatusCode]++
			if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flipped
	for s, n := range statuses {
		if s != 200 && s != 503 {
			t.Errorf("%d responses with status %d; want only 200 or 503 (timed out)", n, s)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		if n > 1 {
			t.Errorf("request %s reached the upstream %d times", id, n)
		}
	}
	if statuses[200] != len(seen) {
		t.Errorf("%d answered 200 but the upstream saw %d distinct requests", statuses[200], len(seen))
	}
	t.Logf("statuses: %v", statuses)
}
