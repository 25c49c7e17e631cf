package proxy_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// Request framing (issue 6). The rule for every case: the proxy either
// rejects the request (400, or 501 for a transfer coding it does not
// implement, RFC 9112 §6.1) and closes the connection, or forwards exactly
// one unambiguous request carrying exactly the client's body — never two,
// never a different one. A proxy that disagrees with its upstream about
// where a body ends is the root of request smuggling (RFC 9112 §11.2).

// framing says what a case may do.
type framing int

const (
	mayEither   framing = iota // reject, or forward the body
	mustReject                 // 400 (or 501) and close
	mustForward                // one request upstream with the body
)

type framingCase struct {
	name string
	req  string
	want framing
	body string // the body the forwarded request must carry
	// mustClose: even when forwarded, the connection closes after the
	// response (RFC 9112 §6.1 for HTTP/1.0 with Transfer-Encoding).
	mustClose bool
	// halfClose: the client shuts its write side after req (a body that
	// ends early).
	halfClose bool
}

// smuggled is a complete request hidden in bodies: if the proxy or the
// upstream ever parses it as a request, framing was ambiguous.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"

// chunk encodes s as one chunk.
func advChunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

func advPost(headers, body string) string {
	return "POST /f HTTP/1.1\r\nHost: app.test\r\n" + headers + "\r\n" + body
}

var framingCases = []framingCase{
	// RFC 9112 §6.1: with both, Transfer-Encoding wins; the intermediary
	// must drop Content-Length before forwarding, and close afterwards.
	{name: "cl-then-te", req: advPost("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"+smuggled), want: mustReject},
	{name: "te-then-cl", req: advPost("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"+smuggled), want: mustReject},
	{name: "cl-shorter-than-chunked", req: advPost("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", advChunk("hello")+"0\r\n\r\n"), want: mustReject},

	// RFC 9112 §6.3 item 5 and RFC 9110 §8.6: a Content-Length that is not
	// a single 1*DIGIT is unrecoverable framing: 400 and close. A list or
	// repetition of one identical value may be accepted as that value.
	{name: "cl-list-differing", req: advPost("Content-Length: 1, 2\r\n", "ab"), want: mustReject},
	{name: "cl-list-identical", req: advPost("Content-Length: 2, 2\r\n", "ab"), want: mayEither, body: "ab"},
	{name: "cl-duplicate-identical", req: advPost("Content-Length: 2\r\nContent-Length: 2\r\n", "ab"), want: mayEither, body: "ab"},
	{name: "cl-duplicate-differing", req: advPost("Content-Length: 2\r\nContent-Length: 3\r\n", "abc"), want: mustReject},
	{name: "cl-plus-sign", req: advPost("Content-Length: +5\r\n", "abcde"), want: mustReject},
	{name: "cl-minus", req: advPost("Content-Length: -1\r\n", "abcde"), want: mustReject},
	{name: "cl-hex", req: advPost("Content-Length: 0x5\r\n", "abcde"), want: mustReject},
	{name: "cl-trailing-garbage", req: advPost("Content-Length: 5a\r\n", "abcde"), want: mustReject},
	{name: "cl-inner-space", req: advPost("Content-Length: 5 5\r\n", "abcde"), want: mustReject},
	{name: "cl-empty", req: advPost("Content-Length: \r\n", "abcde"), want: mustReject},
	{name: "cl-overflow", req: advPost("Content-Length: 99999999999999999999999\r\n", "abcde"), want: mustReject},
	// Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
	{name: "cl-ows-before", req: advPost("Content-Length:  5\r\n", "abcde"), want: mayEither, body: "abcde"},
	{name: "cl-ows-after", req: advPost("Content-Length: 5 \r\n", "abcde"), want: mayEither, body: "abcde"},
	{name: "cl-leading-zeros", req: advPost("Content-Length: 005\r\n", "abcde"), want: mayEither, body: "abcde"},
	{name: "cl-on-get", req: "GET /f HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nabcde", want: mustForward, body: "abcde"},
	{name: "cl-plain", req: advPost("Content-Length: 5\r\n", "abcde"), want: mustForward, body: "abcde"},

	// Transfer-Encoding: codings are case-insensitive tokens in a list
	// with optional whitespace (RFC 9112 §6.1, §7; RFC 9110 §5.6.1).
	{name: "te-plain", req: advPost("Transfer-Encoding: chunked\r\n", advChunk("abc")+"0\r\n\r\n"), want: mustForward, body: "abc"},
	{name: "te-ows-after", req: advPost("Transfer-Encoding: chunked \r\n", advChunk("abc")+"0\r\n\r\n"), want: mayEither, body: "abc"},
	{name: "te-ows-before", req: advPost("Transfer-Encoding:  chunked\r\n", advChunk("abc")+"0\r\n\r\n"), want: mayEither, body: "abc"},
	{name: "te-tab", req: advPost("Transfer-Encoding:\tchunked\r\n", advChunk("abc")+"0\r\n\r\n"), want: mayEither, body: "abc"},
	{name: "te-case", req: advPost("Transfer-Encoding: Chunked\r\n", advChunk("abc")+"0\r\n\r\n"), want: mayEither, body: "abc"},
	{name: "te-empty-list-element", req: advPost("Transfer-Encoding: , chunked\r\n", advChunk("abc")+"0\r\n\r\n"), want: mayEither, body: "abc"},
	{name: "te-obs-fold", req: advPost("Transfer-Encoding:\r\n chunked\r\n", advChunk("abc")+"0\r\n\r\n"), want: mayEither, body: "abc"},
	{name: "te-vertical-tab", req: advPost("Transfer-Encoding: \vchunked\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mayEither, body: "abc"},
	{name: "te-nul", req: advPost("Transfer-Encoding: chunked\x00\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mustReject},
	// RFC 9112 §6.3 item 4: chunked not last → the length cannot be
	// determined: 400 and close. An unknown coding may get 501 (§6.1).
	{name: "te-chunked-identity", req: advPost("Transfer-Encoding: chunked, identity\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mustReject},
	{name: "te-gzip-only", req: advPost("Transfer-Encoding: gzip\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mustReject},
	{name: "te-identity", req: advPost("Transfer-Encoding: identity\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mustReject},
	{name: "te-identity-smuggle", req: advPost("Transfer-Encoding: identity\r\n", smuggled), want: mustReject},
	{name: "te-xchunked", req: advPost("Transfer-Encoding: xchunked\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mustReject},
	{name: "te-chunked-suffix", req: advPost("Transfer-Encoding: chunkedx\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mustReject},
	// Forwarding "gzip, chunked" as plain "chunked" would hand the upstream
	// a gzip body it takes for plain text: a different request.
	{name: "te-gzip-chunked", req: advPost("Transfer-Encoding: gzip, chunked\r\n", advChunk("abc")+"0\r\n\r\n"), want: mayEither, body: "abc"},
	// chunked applied twice (RFC 9112 §7: a sender MUST NOT).
	{name: "te-duplicate-chunked", req: advPost("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mustReject},
	{name: "te-identity-then-chunked-lines", req: advPost("Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n", advChunk("abc")+"0\r\n\r\n"), want: mayEither, body: "abc"},
	{name: "te-chunked-then-gzip-lines", req: advPost("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", advChunk("abc")+"0\r\n\r\n"+smuggled), want: mustReject},

	// Chunks (RFC 9112 §7.1): chunk-size is 1*HEXDIG, data is followed by
	// CRLF; anything else is unrecoverable: the upstream must never get a
	// complete request, and the client gets 400 (it is not the upstream's
	// fault, so not 502).
	{name: "chunk-bad-hex", req: advPost("Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"), want: mustReject},
	{name: "chunk-size-0x", req: advPost("Transfer-Encoding: chunked\r\n", "0x3\r\nabc\r\n0\r\n\r\n"), want: mustReject},
	{name: "chunk-size-negative", req: advPost("Transfer-Encoding: chunked\r\n", "-3\r\nabc\r\n0\r\n\r\n"), want: mustReject},
	{name: "chunk-size-overflow", req: advPost("Transfer-Encoding: chunked\r\n", "ffffffffffffffffff1\r\na\r\n0\r\n\r\n"), want: mustReject},
	{name: "chunk-data-no-crlf", req: advPost("Transfer-Encoding: chunked\r\n", "3\r\nabcX0\r\n\r\n"+smuggled), want: mustReject},
	{name: "chunk-data-longer-than-size", req: advPost("Transfer-Encoding: chunked\r\n", "3\r\nabcdef\r\n0\r\n\r\n"), want: mustReject},
	{name: "chunk-bare-lf", req: advPost("Transfer-Encoding: chunked\r\n", "3\nabc\n0\n\n"), want: mayEither, body: "abc"},
	{name: "chunk-extensions", req: advPost("Transfer-Encoding: chunked\r\n", "3;ext=1;q=\"a;b\"\r\nabc\r\n0;last\r\n\r\n"), want: mustForward, body: "abc"},
	{name: "chunk-leading-zeros", req: advPost("Transfer-Encoding: chunked\r\n", "0003\r\nabc\r\n0\r\n\r\n"), want: mayEither, body: "abc"},
	{name: "chunk-trailer", req: advPost("Transfer-Encoding: chunked\r\n", advChunk("abc")+"0\r\nX-Trailer: t\r\n\r\n"), want: mustForward, body: "abc"},
	// Framing fields are prohibited in trailers (RFC 9110 §6.5.1): an
	// upstream that merges trailers into headers must not see them.
	{name: "chunk-trailer-framing", req: advPost("Transfer-Encoding: chunked\r\n", advChunk("abc")+"0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\nHost: other.test\r\n\r\n"), want: mayEither, body: "abc"},

	// A body that ends early (the client shuts its side) must not reach
	// the upstream as a complete request.
	{name: "truncated-mid-chunk", req: advPost("Transfer-Encoding: chunked\r\n", "5\r\nabc"), halfClose: true, want: mustReject},
	{name: "truncated-at-chunk-boundary", req: advPost("Transfer-Encoding: chunked\r\n", advChunk("abc")), halfClose: true, want: mustReject},
	{name: "truncated-content-length", req: advPost("Content-Length: 10\r\n", "abc"), halfClose: true, want: mustReject},

	// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
	// framing; the connection closes after it, whatever is done with it.
	{name: "http10-te", req: "POST /f HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n" + advChunk("abc") + "0\r\n\r\n" + smuggled, want: mayEither, body: "abc", mustClose: true},
	{name: "http10-te-cl", req: "POST /f HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + advChunk("abc") + "0\r\n\r\n" + smuggled, want: mustReject},
	{name: "http10-cl-keep-alive", req: "POST /f HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc", want: mustForward, body: "abc"},
}

func TestRequestFraming(t *testing.T) {
	cfg := strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nupstream_timeout = \"1s\"", 1)
	h, u := advSetup(t, cfg)
	for _, tc := range framingCases {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advExchange(t, h.addr, tc.req, tc.halfClose)
			u.settle(10 * time.Millisecond)
			checkOneOrReject(t, u, res, tc)
		})
	}
}

// advExchange sends req on a new connection, optionally shutting the
// write side after it, and reads every response.
func advExchange(t *testing.T, addr, req string, halfClose bool) advResult {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(req)); err != nil {
		t.Logf("write: %v", err)
	}
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	return advRead(c, 300*time.Millisecond)
}

// checkOneOrReject asserts the framing rule on one exchange.
func checkOneOrReject(t *testing.T, u *recUpstream, res advResult, tc framingCase) {
	t.Helper()
	reqs, errs := u.requests()
	for _, r := range reqs {
		if strings.Contains(r.Target, "smuggled") {
			t.Errorf("upstream received the smuggled request %s %s; it must only ever be body bytes%s", r.Method, r.Target, u.dump())
		}
	}
	if tc.halfClose && tc.want == mustReject {
		// The client is gone: whatever it is told, the upstream must not
		// have been handed a complete request.
		if len(reqs) != 0 {
			t.Errorf("body cut short, yet upstream received %d complete request(s); responses %v%s", len(reqs), res.statuses(), u.dump())
		}
		return
	}
	var final []advResponse
	for _, r := range res.Responses {
		if r.Status >= 200 {
			final = append(final, r)
		}
	}
	if res.ParseErr != nil {
		t.Errorf("malformed response: %v", res)
	}
	if len(final) == 0 {
		if tc.halfClose && len(reqs) == 0 {
			return // the client gave up; nothing complete was forwarded
		}
		t.Fatalf("no response: %v; upstream got%s", res, u.dump())
	}
	if len(final) > 1 {
		t.Errorf("got %d responses %v to one request; want 1 (the body was parsed as a request)", len(final), res.statuses())
	}
	status := final[0].Status
	switch {
	case status == 400 || status == 501:
		if tc.want == mustForward {
			t.Errorf("got %d; want the request forwarded with body %q", status, tc.body)
		}
		if !res.Closed {
			t.Errorf("connection left open after %d; want it closed (RFC 9112 §6.3)", status)
		}
		if len(reqs) != 0 {
			t.Errorf("rejected with %d, yet upstream received %d complete request(s)%s", status, len(reqs), u.dump())
		}
	case status == 200:
		if tc.want == mustReject {
			t.Errorf("got 200; want 400 and close%s", u.dump())
		}
		if len(reqs) != 1 || len(errs) != 0 {
			t.Fatalf("upstream received %d request(s), errors %v; want exactly 1 well-formed%s", len(reqs), errs, u.dump())
		}
		if tc.want != mustReject && reqs[0].Body != tc.body {
			t.Errorf("forwarded body %q; want %q", reqs[0].Body, tc.body)
		}
		if tc.mustClose && !res.Closed {
			t.Errorf("connection left open; want it closed after this request (RFC 9112 §6.1)")
		}
		checkForwardedFraming(t, u, reqs[0])
	default:
		t.Errorf("got status %d; want 400 (reject) or 200 (forwarded once): %v; upstream got%s", status, res, u.dump())
	}
}

// checkForwardedFraming asserts that the one forwarded request is framed
// in exactly one way, with only transfer codings it had (RFC 9112 §6.1),
// and carries no framing field in its trailer section (RFC 9110 §6.5.1).
func checkForwardedFraming(t *testing.T, u *recUpstream, r advReq) {
	t.Helper()
	for _, raw := range u.received() {
		if len(raw) == 0 {
			continue
		}
		if bad := advStrictCheck(string(raw)); len(bad) > 0 {
			t.Errorf("forwarded head is not strictly valid: %v%s", bad, u.dump())
		}
		_, fields := advHead(string(raw))
		if te := advValues(fields, "Transfer-Encoding"); len(te) == 1 && !strings.EqualFold(te[0], "chunked") {
			t.Logf("forwarded Transfer-Encoding %q", te[0])
		}
	}
	for k := range r.Trailer {
		if slices.Contains([]string{"Content-Length", "Transfer-Encoding", "Host"}, k) {
			t.Errorf("forwarded trailer %s: framing and routing fields are prohibited in trailers", k)
		}
	}
}

// The coding list is forwarded intact: "gzip, chunked" reaching the
// upstream as plain "chunked" would be a different request.
func TestTransferCodingsKept(t *testing.T) {
	h, u := advSetup(t, oneService)
	res := advExchange(t, h.addr, advPost("Transfer-Encoding: gzip, chunked\r\n", advChunk("abc")+"0\r\n\r\n"), false)
	u.settle(10 * time.Millisecond)
	if len(res.Responses) == 0 {
		t.Fatalf("no response: %v", res)
	}
	if s := res.Responses[0].Status; s == 400 || s == 501 {
		return // rejecting an unsupported coding is fine (RFC 9112 §6.1)
	}
	// net/http's parser refuses codings other than chunked, so read the
	// forwarded head directly.
	var te []string
	for _, raw := range u.received() {
		_, fields := advHead(string(raw))
		te = append(te, advValues(fields, "Transfer-Encoding")...)
	}
	if got := strings.Join(te, ", "); !strings.Contains(got, "gzip") {
		t.Errorf("forwarded Transfer-Encoding %q; want gzip kept%s", got, u.dump())
	}
}
