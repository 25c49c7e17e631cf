package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzProxyRawRequest pushes raw bytes through a real proxy to a recording
// upstream (issue 6). Invariants, for any bytes a client may send:
//   - nothing panics (the proxy runs in this process);
//   - every byte the client gets back parses as a sequence of well-formed
//     HTTP/1.1 responses (net/http's parser), with no trailing garbage;
//   - the upstream receives at most one request per client request: it
//     never parses more requests than the client got answers from it
//     (each upstream answer is marked), so no client request was split
//     into two (request smuggling); and no more than net/http finds in
//     the client's bytes, plus one (a lenient parse of one request is
//     tolerated; reading a body as a further request is not);
//   - what the upstream receives parses with net/http, except a body cut
//     short when the client's own body ended early.
//
// Run with: go test -run '^$' -fuzz '^FuzzProxyRawRequest$' -fuzztime 30s ./proxy
func FuzzProxyRawRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"GET /a?b=c HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET http://app.test/x HTTP/1.1\r\nHost: other.test\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\nGET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: X-A, close\r\nX-A: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: app.test\r\nX-Foo: a\r\n b\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: nope.test\r\nContent-Length: 3\r\n\r\nGET",
	} {
		f.Add([]byte(s))
	}
	cfg := strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nupstream_timeout = \"500ms\"\nclient_header_timeout = \"1s\"", 1)
	h, u := advSetup(f, cfg)
	u.setRespond(func(int, *http.Request, []byte) string {
		return "HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Length: 2\r\n\r\nok"
	})
	f.Fuzz(func(t *testing.T, raw []byte) {
		u.settle(2 * time.Millisecond)
		u.reset()
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(raw)
		c.(*net.TCPConn).CloseWrite()
		res := advRead(c, 3*time.Second, methodsOf(raw)...)
		u.settle(5 * time.Millisecond)

		if res.ParseErr != nil {
			t.Fatalf("malformed response stream: %v\nfor input %q", res.ParseErr, raw)
		}
		fromUp := 0
		for _, r := range res.Responses {
			if r.Proto != "HTTP/1.1" {
				t.Errorf("response in %s; want HTTP/1.1", r.Proto)
			}
			if r.BodyErr != nil {
				t.Errorf("response body cut short: %v", r.BodyErr)
			}
			if r.Header.Get("X-Up") == "1" {
				fromUp++
			}
		}
		reqs, errs := u.requests()
		if ref := clientRequests(raw); len(reqs) > ref+1 {
			t.Errorf("upstream received %d requests; net/http finds %d in the client's bytes%s\nfor input %q", len(reqs), ref, u.dump(), raw)
		}
		if len(reqs) > fromUp {
			t.Errorf("upstream received %d requests, the client got %d answers from it: a request was split%s\nfor input %q", len(reqs), fromUp, u.dump(), raw)
		}
		for _, err := range errs {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("upstream received bytes net/http cannot parse: %v\nfor input %q", err, raw)
			}
		}
	})
}

// clientRequests counts the complete requests net/http parses from raw,
// up to the first it cannot parse.
func clientRequests(raw []byte) int {
	br := bufio.NewReader(bytes.NewReader(raw))
	n := 0
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return n
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return n
		}
		n++
	}
}

// methodsOf guesses the methods of the requests in raw, in order, so that
// responses to HEAD are parsed without a body. Lines that start a request
// are those after an empty line (or the first).
func methodsOf(raw []byte) []string {
	var out []string
	for _, part := range bytes.Split(raw, []byte("\r\n\r\n")) {
		m, _, _ := bytes.Cut(bytes.TrimLeft(part, "\r\n"), []byte(" "))
		out = append(out, string(m))
	}
	return out
}
