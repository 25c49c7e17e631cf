package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agimo/agimo/proxy"
)

// Header syntax, limits and forwarding hygiene (issue 6). What a strict
// parser would reject must never reach the upstream: a lenient upstream
// behind a lenient proxy is how headers get smuggled.

type headerCase struct {
	name string
	req  string
	want framing // mustReject: 400 and close; mayEither: 400, or forwarded strictly valid
	// forbidden are byte strings that must not appear in what the upstream
	// receives (the raw offending bytes).
	forbidden []string
	// wantHeader, if set, must be in the forwarded head (name: value).
	wantHeader *advField
}

func advGet(headers string) string { return "GET /h HTTP/1.1\r\nHost: app.test\r\n" + headers + "\r\n" }

var headerCases = []headerCase{
	// RFC 9112 §5.1: "No whitespace is allowed between the field name and
	// colon ... A server MUST reject, with a response status code of 400,
	// any received request message that contains whitespace between a
	// header field name and colon."
	{name: "space-before-colon-host", req: "GET /h HTTP/1.1\r\nHost : app.test\r\n\r\n", want: mustReject},
	{name: "space-before-colon", req: advGet("X-Foo : bar\r\n"), want: mustReject},
	{name: "tab-before-colon", req: advGet("X-Foo\t: bar\r\n"), want: mustReject},
	// RFC 9112 §5.2: obs-fold is rejected with 400, or each fold replaced
	// by SP before forwarding; never forwarded as a fold.
	{name: "obs-fold", req: advGet("X-Foo: a\r\n b\r\n"), want: mayEither, forbidden: []string{"a\r\n b"}, wantHeader: &advField{"X-Foo", "a b"}},
	{name: "obs-fold-tab", req: advGet("X-Foo: a\r\n\tb\r\n"), want: mayEither, forbidden: []string{"a\r\n\tb"}},
	// A first field line that starts with whitespace (RFC 9112 §2.2).
	{name: "leading-space-first-field", req: "GET /h HTTP/1.1\r\n Host: app.test\r\n\r\n", want: mustReject},
	{name: "leading-tab-field", req: advGet("\tX-Foo: a\r\n"), want: mustReject},
	// RFC 9110 §5.5: CR, LF and NUL in a value are invalid and dangerous:
	// reject, or replace with SP. Other CTLs are invalid too.
	{name: "nul-in-value", req: advGet("X-Foo: a\x00b\r\n"), want: mayEither, forbidden: []string{"a\x00b"}},
	{name: "bare-cr-in-value", req: advGet("X-Foo: a\rX-Injected: 1\r\n"), want: mayEither, forbidden: []string{"\rX-Injected", "\r\nX-Injected"}},
	{name: "ctl-in-value", req: advGet("X-Foo: a\x01b\r\n"), want: mayEither, forbidden: []string{"a\x01b"}},
	{name: "del-in-value", req: advGet("X-Foo: a\x7fb\r\n"), want: mayEither, forbidden: []string{"a\x7fb"}},
	{name: "obs-text-in-value", req: advGet("X-Foo: caf\xe9\r\n"), want: mayEither},
	// A bare LF may end a line (RFC 9112 §2.2); then both fields are fields.
	{name: "bare-lf-between-fields", req: advGet("X-Foo: a\nX-Bar: b\r\n"), want: mayEither, forbidden: []string{"a\nX-Bar"}},
	// Field names are tokens (RFC 9110 §5.1).
	{name: "nul-in-name", req: advGet("X-F\x00oo: a\r\n"), want: mustReject},
	{name: "empty-name", req: advGet(": a\r\n"), want: mustReject},
	{name: "no-colon", req: advGet("X-Foo a\r\n"), want: mustReject},
	{name: "space-in-name", req: advGet("X Foo: a\r\n"), want: mayEither, forbidden: []string{"X Foo"}},
	{name: "non-ascii-name", req: advGet("X-F\xf6o: a\r\n"), want: mayEither, forbidden: []string{"X-F\xf6o"}},
	// Request line (RFC 9112 §3): one SP between parts, exact version.
	{name: "double-space", req: "GET  /h HTTP/1.1\r\nHost: app.test\r\n\r\n", want: mustReject},
	{name: "trailing-space", req: "GET /h HTTP/1.1 \r\nHost: app.test\r\n\r\n", want: mustReject},
	{name: "lowercase-version", req: "GET /h http/1.1\r\nHost: app.test\r\n\r\n", want: mustReject},
	{name: "space-in-target", req: "GET /a b HTTP/1.1\r\nHost: app.test\r\n\r\n", want: mustReject},
	{name: "nul-in-method", req: "G\x00ET /h HTTP/1.1\r\nHost: app.test\r\n\r\n", want: mustReject},
	{name: "nul-in-target", req: "GET /\x00 HTTP/1.1\r\nHost: app.test\r\n\r\n", want: mustReject},
	{name: "no-version", req: "GET /h\r\nHost: app.test\r\n\r\n", want: mustReject},
	{name: "leading-empty-lines", req: "\r\n\r\nGET /h HTTP/1.1\r\nHost: app.test\r\n\r\n", want: mayEither},
	// RFC 9110 §6.2: an intermediary sends its own version; HTTP/2 and
	// later over HTTP/1 syntax is not a version it speaks (505).
	{name: "version-2.0", req: "GET /h HTTP/2.0\r\nHost: app.test\r\n\r\n", want: mustReject, forbidden: []string{"HTTP/2.0"}},
	{name: "version-1.2", req: "GET /h HTTP/1.2\r\nHost: app.test\r\n\r\n", want: mayEither, forbidden: []string{"HTTP/1.2"}},
	// A request whose lines all end in bare LF: either served or rejected,
	// promptly.
	{name: "all-bare-lf", req: "GET /h HTTP/1.1\nHost: app.test\nX-Foo: a\n\n", want: mayEither},
	{name: "bare-lf-before-crlf-blank", req: "GET /h HTTP/1.1\r\nHost: app.test\r\nX-Foo: a\n\r\n", want: mayEither},
	{name: "bare-lf-blank-after-crlf", req: "GET /h HTTP/1.1\r\nHost: app.test\r\n\n", want: mayEither},
	{name: "all-bare-lf-http10", req: "GET /h HTTP/1.0\nHost: app.test\n\n", want: mayEither},
}

func TestHeaderSyntax(t *testing.T) {
	h, u := advSetup(t, oneService)
	for _, tc := range headerCases {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, tc.req, 500*time.Millisecond)
			u.settle(10 * time.Millisecond)
			checkHeaderCase(t, u, res, tc)
		})
	}
}

func checkHeaderCase(t *testing.T, u *recUpstream, res advResult, tc headerCase) {
	t.Helper()
	for _, raw := range u.received() {
		for _, f := range tc.forbidden {
			if strings.Contains(string(raw), f) {
				t.Errorf("upstream received %q%s", f, u.dump())
			}
		}
	}
	if len(res.Responses) != 1 {
		t.Fatalf("got %v; want exactly one response; upstream got%s", res, u.dump())
	}
	reqs, errs := u.requests()
	switch s := res.Responses[0].Status; {
	case s == 400 || s == 505:
		if tc.want == mustForward {
			t.Errorf("got %d; want the request forwarded", s)
		}
		if !res.Closed {
			t.Errorf("connection left open after %d; want it closed", s)
		}
		if u.totalBytes() != 0 {
			t.Errorf("rejected with %d, yet the upstream received bytes%s", s, u.dump())
		}
	case s == 200:
		if tc.want == mustReject {
			t.Errorf("got 200; want 400 and close; upstream got%s", u.dump())
		}
		if len(reqs) != 1 || len(errs) != 0 {
			t.Fatalf("upstream received %d request(s), errors %v; want 1 well-formed%s", len(reqs), errs, u.dump())
		}
		for _, raw := range u.received() {
			if len(raw) == 0 {
				continue
			}
			if bad := advStrictCheck(string(raw)); len(bad) > 0 {
				t.Errorf("forwarded head is not strictly valid: %v%s", bad, u.dump())
			}
			if w := tc.wantHeader; w != nil {
				_, fields := advHead(string(raw))
				if got := advValues(fields, w.Name); len(got) != 1 || got[0] != w.Value {
					t.Errorf("forwarded %s = %q; want [%q]", w.Name, got, w.Value)
				}
			}
		}
	default:
		t.Errorf("got status %d; want 400 or 200: %v", s, res)
	}
}

// Names with underscores alias the headers Agimo sets: CGI, PHP, WSGI and
// Rack map both X-Forwarded-For and X_Forwarded_For to
// HTTP_X_FORWARDED_FOR, so an upstream may read the client's spoof. nginx
// drops such headers (underscores_in_headers off); Agimo must drop them
// or reject the request.
func TestUnderscoreHeadersCannotAlias(t *testing.T) {
	h, u := advSetup(t, oneService)
	for _, name := range []string{"X_Forwarded_For", "x_forwarded_for", "X-Forwarded_For", "X_Forwarded-Proto", "X_FORWARDED_HOST"} {
		t.Run(name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, advGet(name+": 6.6.6.6\r\n"), 300*time.Millisecond)
			u.settle(10 * time.Millisecond)
			if len(res.Responses) != 1 {
				t.Fatalf("got %v; want one response", res)
			}
			if s := res.Responses[0].Status; s == 400 {
				return
			}
			for _, raw := range u.received() {
				_, fields := advHead(string(raw))
				for _, f := range fields {
					if strings.Contains(f.Name, "_") && isForwardedAlias(f.Name) {
						t.Errorf("forwarded %s: %s; want it dropped (or 400)", f.Name, f.Value)
					}
				}
			}
		})
	}
}

func isForwardedAlias(name string) bool {
	n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	return n == "x-forwarded-for" || n == "x-forwarded-proto" || n == "x-forwarded-host"
}

// Oversized header lines and blocks get 431 and a close, and nothing is
// forwarded (RFC 6585 §5). A head just under the buffer still passes.
func TestOversizedHeaders(t *testing.T) {
	h, u := advSetup(t, oneService)
	many := strings.Repeat("X-Hdr: "+strings.Repeat("v", 70)+"\r\n", 250) // ~19.5 KiB
	for _, tc := range []struct {
		name, req string
		want      int
	}{
		{"long-line", advGet("X-Big: " + strings.Repeat("a", 20<<10) + "\r\n"), 431},
		{"many-lines", advGet(many), 431},
		{"huge-block", advGet(strings.Repeat("X-Hdr: "+strings.Repeat("v", 1000)+"\r\n", 100)), 431},
		// The target "/" is also fasthttp's default for a line it never
		// parsed: a head too big after a "/" line is still 431, not 414.
		{"root-target", "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431},
		{"under-limit", advGet("X-Big: " + strings.Repeat("a", 8<<10) + "\r\n"), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, tc.req, 300*time.Millisecond)
			u.settle(10 * time.Millisecond)
			if len(res.Responses) != 1 || res.Responses[0].Status != tc.want {
				t.Fatalf("got %v; want one %d", res, tc.want)
			}
			if tc.want == 200 {
				if reqs, _ := u.requests(); len(reqs) != 1 || len(reqs[0].Header.Get("X-Big")) != 8<<10 {
					t.Errorf("the 8 KiB header was not forwarded intact%s", u.dump())
				}
				return
			}
			if !res.Closed {
				t.Errorf("connection left open after %d", tc.want)
			}
			if n := u.totalBytes(); n != 0 {
				t.Errorf("upstream received %d bytes; want none", n)
			}
		})
	}
}

// A request line longer than the proxy accepts is refused before anything
// is forwarded. RFC 9112 §3: "A server that receives a request-target
// longer than any URI it wishes to parse MUST respond with a 414".
func TestLongRequestLine(t *testing.T) {
	h, u := advSetup(t, oneService)
	req := "GET /" + strings.Repeat("a", 20<<10) + " HTTP/1.1\r\nHost: app.test\r\n\r\n"
	res := advSend(t, h.addr, req, 300*time.Millisecond)
	u.settle(10 * time.Millisecond)
	if len(res.Responses) != 1 {
		t.Fatalf("got %v; want one response", res)
	}
	s := res.Responses[0].Status
	t.Run("refused", func(t *testing.T) {
		if s < 400 || s > 499 || !res.Closed {
			t.Errorf("got %d, closed %v; want a 4xx and a close", s, res.Closed)
		}
		if n := u.totalBytes(); n != 0 {
			t.Errorf("upstream received %d bytes; want none", n)
		}
	})
	t.Run("414", func(t *testing.T) {
		if s != 414 {
			t.Errorf("got %d; want 414", s)
		}
	})
	// The same line as the second request on a connection: the first's
	// line feed must not count for the second's line.
	t.Run("second-request", func(t *testing.T) {
		res := advSend(t, h.addr, advGet("")+req, 300*time.Millisecond)
		var got []int
		for _, r := range res.Responses {
			got = append(got, r.Status)
		}
		if len(got) != 2 || got[0] != 200 || got[1] != 414 || !res.Closed {
			t.Errorf("got %v, closed %v; want [200 414] and a close", got, res.Closed)
		}
	})
}

// maxBodyKey sets the request body limit for TestBodyOverLimit.
const maxBodyKey = `max_request_body = "1KiB"`

// A body over the limit gets 413 before anything is dialled (a declared
// Content-Length), whether or not the service is ready — a parked request
// must not wait out its timeout to be refused. A chunked body over the
// limit never reaches the upstream whole.
func TestBodyOverLimit(t *testing.T) {
	cfg := strings.Replace(oneService, `timeout = "2s"`, `timeout = "2s"`+"\n"+maxBodyKey, 1)
	h := startHarness(t, cfg)
	u := newRecUpstream(t)
	big := strings.Repeat("x", 2048)

	t.Run("content-length-parked", func(t *testing.T) {
		// Not ready: the answer must not wait for readiness.
		start := time.Now()
		res := advSend(t, h.addr, advPost("Content-Length: 2048\r\n", big), time.Second)
		if len(res.Responses) != 1 || res.Responses[0].Status != 413 || !res.Closed {
			t.Fatalf("got %v; want one 413 and a close", res)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("413 took %v; want it before parking", d)
		}
	})
	h.setEndpoints("apps", "app", true, u.addr())
	t.Run("under-limit", func(t *testing.T) {
		// Also waits until the service is ready.
		res := advSend(t, h.addr, advPost("Content-Length: 1000\r\n", big[:1000]), time.Second)
		if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
			t.Fatalf("got %v; want 200", res)
		}
	})
	t.Run("content-length", func(t *testing.T) {
		u.settle(10 * time.Millisecond)
		u.reset()
		res := advSend(t, h.addr, advPost("Content-Length: 2048\r\n", big), time.Second)
		if len(res.Responses) != 1 || res.Responses[0].Status != 413 || !res.Closed {
			t.Fatalf("got %v; want one 413 and a close", res)
		}
		if n, b := u.accepts.Load(), u.totalBytes(); n != 0 || b != 0 {
			t.Errorf("upstream dialled %d times and got %d bytes; want nothing", n, b)
		}
	})
	t.Run("chunked", func(t *testing.T) {
		u.settle(10 * time.Millisecond)
		u.reset()
		res := advSend(t, h.addr, advPost("Transfer-Encoding: chunked\r\n", advChunk(big)+"0\r\n\r\n"), time.Second)
		u.settle(10 * time.Millisecond)
		if reqs, _ := u.requests(); len(reqs) != 0 {
			t.Errorf("upstream received a complete %d-byte body; want the request cut off at 1 KiB", len(reqs[0].Body))
		}
		if len(res.Responses) == 1 && res.Responses[0].Status != 413 {
			t.Errorf("got %d; want 413 (or the connection closed)", res.Responses[0].Status)
		}
		t.Logf("chunked over the limit: %v", res)
	})
}

// Hop-by-hop fields (RFC 9110 §7.6.1) and those the sender listed in
// Connection never cross the proxy, in either direction, however the
// Connection field is spelled or split over lines; and listing a field the
// proxy needs (framing, Host, its own X-Forwarded-*) cannot change what
// is forwarded.
func TestHopByHopRequest(t *testing.T) {
	h, u := advSetup(t, oneService)
	for _, tc := range []struct {
		name, req string
		gone      []string // fields the upstream must not see
		keep      map[string]string
		body      string
	}{
		{name: "standard", req: advGet("Connection: keep-alive\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n"),
			gone: []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE", "Trailer", "Upgrade"}},
		{name: "listed", req: advGet("Connection: X-Secret\r\nX-Secret: s\r\n"), gone: []string{"X-Secret"}},
		{name: "listed-odd-spacing-and-case", req: advGet("Connection:  x-secret ,X-OTHER,,\r\nX-Secret: s\r\nX-Other: o\r\n"), gone: []string{"X-Secret", "X-Other"}},
		{name: "listed-in-second-connection-line", req: advGet("Connection: keep-alive\r\nConnection: X-Secret\r\nX-Secret: s\r\n"), gone: []string{"X-Secret"}},
		{name: "listed-twice-repeated-field", req: advGet("Connection: X-Secret\r\nX-Secret: a\r\nX-Secret: b\r\n"), gone: []string{"X-Secret"}},
		{name: "listing-x-forwarded-for", req: advGet("Connection: X-Forwarded-For, X-Forwarded-Proto\r\n"),
			keep: map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"}},
		{name: "listing-host", req: advGet("Connection: Host\r\n"), keep: map[string]string{"Host": "app.test", "X-Forwarded-Host": "app.test"}},
		{name: "listing-content-length", req: advPost("Connection: Content-Length\r\nContent-Length: 5\r\n", "abcde"), body: "abcde"},
		{name: "listing-transfer-encoding", req: advPost("Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n", advChunk("abcde")+"0\r\n\r\n"), body: "abcde"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, tc.req, 500*time.Millisecond)
			u.settle(10 * time.Millisecond)
			if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
				t.Fatalf("got %v; want one 200", res)
			}
			reqs, errs := u.requests()
			if len(reqs) != 1 || len(errs) != 0 {
				t.Fatalf("upstream got %d requests, errors %v; want 1%s", len(reqs), errs, u.dump())
			}
			var fields []advField
			for _, raw := range u.received() {
				if len(raw) > 0 {
					_, fields = advHead(string(raw))
				}
			}
			for _, k := range tc.gone {
				if v := advValues(fields, k); len(v) > 0 {
					t.Errorf("forwarded %s: %q; want it stripped", k, v)
				}
			}
			for k, want := range tc.keep {
				if v := advValues(fields, k); len(v) != 1 || v[0] != want {
					t.Errorf("forwarded %s = %q; want [%q]", k, v, want)
				}
			}
			if reqs[0].Body != tc.body {
				t.Errorf("forwarded body %q; want %q", reqs[0].Body, tc.body)
			}
		})
	}
}

func TestHopByHopResponse(t *testing.T) {
	for _, tc := range []struct {
		name, head string // upstream response head fields
		gone       []string
	}{
		{name: "standard", head: "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authenticate: Basic\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n",
			gone: []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "TE", "Upgrade"}},
		{name: "listed", head: "Connection: X-Up\r\nX-Up: s\r\n", gone: []string{"X-Up"}},
		// Trailer is end-to-end (RFC 9110 §6.6.2), less the names listed.
		{name: "trailer-listed", head: "Connection: X-Up\r\nTrailer: X-Up\r\n", gone: []string{"X-Up", "Trailer"}},
		{name: "listed-odd-spacing", head: "Connection: ,  x-up ,X-UP2\r\nX-Up: s\r\nX-Up2: t\r\n", gone: []string{"X-Up", "X-Up2"}},
		{name: "listed-in-second-line", head: "Connection: keep-alive\r\nConnection: X-Up\r\nX-Up: s\r\n", gone: []string{"X-Up"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, u := advSetup(t, oneService)
			u.setRespond(func(int, *http.Request, []byte) string {
				return "HTTP/1.1 200 OK\r\n" + tc.head + "X-App: a\r\nContent-Length: 2\r\n\r\nok"
			})
			res := advSend(t, h.addr, advGet(""), 300*time.Millisecond)
			if len(res.Responses) != 1 || res.Responses[0].Status != 200 || res.Responses[0].Body != "ok" {
				t.Fatalf("got %v; want one 200 \"ok\"", res)
			}
			_, fields := advHead(res.Raw)
			for _, k := range tc.gone {
				if v := advValues(fields, k); len(v) > 0 {
					t.Errorf("client got %s: %q; want it stripped", k, v)
				}
			}
			if v := advValues(fields, "X-App"); len(v) != 1 {
				t.Errorf("client got X-App %q; want [a]", v)
			}
		})
	}
}

// By default a client cannot spoof or remove the X-Forwarded-* fields the
// proxy sets: the upstream sees exactly one of each, with the proxy's
// values, whatever the client sent and however it spelled it.
func TestClientCannotSpoofForwarded(t *testing.T) {
	h, u := advSetup(t, oneService)
	want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "app.test"}
	for _, tc := range []struct{ name, headers string }{
		{name: "plain", headers: "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n"},
		{name: "lower-case", headers: "x-forwarded-for: 6.6.6.6\r\nx-forwarded-proto: https\r\nx-forwarded-host: evil.test\r\n"},
		{name: "list", headers: "X-Forwarded-For: 6.6.6.6, 7.7.7.7\r\n"},
		{name: "empty", headers: "X-Forwarded-For:\r\nX-Forwarded-Host:\r\n"},
		{name: "obs-fold", headers: "X-Forwarded-For: 6.6.6.6\r\n 7.7.7.7\r\n"},
		{name: "repeated", headers: "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nX-Forwarded-Host: b\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, advGet(tc.headers), 300*time.Millisecond)
			u.settle(10 * time.Millisecond)
			if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
				t.Fatalf("got %v; want one 200", res)
			}
			fields := lastHead(u)
			for k, w := range want {
				if got := advValues(fields, k); len(got) != 1 || got[0] != w {
					t.Errorf("forwarded %s = %q; want exactly [%q]", k, got, w)
				}
			}
		})
	}
}

// With trust_forwarded_headers the client's X-Forwarded-For is kept and
// the peer's address appended: the proxy's hop is the last element, once,
// however the client split the field (RFC 7239 §7.1 semantics, which
// upstreams use to find the first untrusted hop from the right).
func TestTrustedForwardedAppends(t *testing.T) {
	h, u := advSetup(t, oneService, func(o *proxy.Options) { o.TrustForwarded = true })
	for _, tc := range []struct{ name, headers, want string }{
		{name: "none", headers: "", want: "127.0.0.1"},
		{name: "one", headers: "X-Forwarded-For: 1.1.1.1\r\n", want: "1.1.1.1, 127.0.0.1"},
		{name: "list", headers: "X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n", want: "1.1.1.1, 2.2.2.2, 127.0.0.1"},
		{name: "two-lines", headers: "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n", want: "1.1.1.1, 2.2.2.2, 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, advGet(tc.headers), 300*time.Millisecond)
			u.settle(10 * time.Millisecond)
			if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
				t.Fatalf("got %v; want one 200", res)
			}
			got := strings.Join(advValues(lastHead(u), "X-Forwarded-For"), ", ")
			if got != tc.want {
				t.Errorf("forwarded X-Forwarded-For %q; want %q", got, tc.want)
			}
		})
	}
}

// lastHead returns the fields of the request head the upstream received
// since the last reset.
func lastHead(u *recUpstream) []advField {
	var fields []advField
	for _, raw := range u.received() {
		if len(raw) > 0 {
			_, fields = advHead(string(raw))
		}
	}
	return fields
}

// No header is invented that the client did not send (issue 2): a body
// without Content-Type is forwarded without one.
func TestNoInventedRequestHeaders(t *testing.T) {
	h, u := advSetup(t, oneService)
	res := advSend(t, h.addr, advPost("Content-Length: 3\r\n", "abc"), 300*time.Millisecond)
	u.settle(10 * time.Millisecond)
	if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
		t.Fatalf("got %v; want one 200", res)
	}
	for _, f := range lastHead(u) {
		switch strings.ToLower(f.Name) {
		case "host", "content-length", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id":
		default:
			t.Errorf("forwarded %s: %s, which the client did not send", f.Name, f.Value)
		}
	}
}
