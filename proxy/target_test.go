package proxy_test

import (
	"strings"
	"testing"
	"time"
)

// Request targets and Host (issue 6). RFC 9112 §3.2: a request has one
// Host; an absolute-form target's authority wins over Host and the proxy
// makes Host agree before forwarding; userinfo is an error (RFC 9110
// §4.2.4); CONNECT is for forward proxies, and Agimo is not one.

type targetCase struct {
	name, req string
	// want is the status; for 200, host and target are what the upstream
	// must receive ("" target: any of the forms listed in targets).
	want    int
	host    string
	targets []string
}

func TestRequestTargets(t *testing.T) {
	h, u := advSetup(t, oneService)
	for _, tc := range []targetCase{
		// Absolute form: the authority routes, Host is rewritten to agree.
		// Origin form is what an origin server expects (RFC 9112 §3.2.1),
		// absolute form it must accept (§3.2.2); either is fine.
		{name: "absolute-overrides-host", req: "GET http://app.test/abs?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n", want: 200, host: "app.test", targets: []string{"/abs?q=1", "http://app.test/abs?q=1"}},
		{name: "absolute-routes-elsewhere", req: "GET http://other.test/abs HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 404},
		{name: "absolute-case-and-port", req: "GET HTTP://APP.TEST:8080/abs HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 200, host: "app.test:8080", targets: []string{"/abs", "http://app.test:8080/abs", "HTTP://APP.TEST:8080/abs"}},
		{name: "absolute-empty-path", req: "GET http://app.test HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 200, host: "app.test", targets: []string{"/", "http://app.test", "http://app.test/"}},
		{name: "absolute-query-no-path", req: "GET http://app.test?x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 200, host: "app.test", targets: []string{"/?x", "http://app.test?x", "http://app.test/?x"}},
		{name: "absolute-without-host", req: "GET http://app.test/x HTTP/1.1\r\n\r\n", want: 400},
		{name: "absolute-https", req: "GET https://app.test/abs HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 200, host: "app.test", targets: []string{"/abs", "https://app.test/abs"}},
		{name: "absolute-unknown-scheme", req: "GET ftp://app.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		// RFC 9110 §4.2.4: userinfo is deprecated and a recipient SHOULD
		// treat it as an error; forwarding it as credentials is invented
		// authentication.
		{name: "userinfo", req: "GET http://user:pw@app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		{name: "userinfo-host-confusion", req: "GET http://evil.test@app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		{name: "userinfo-other-host", req: "GET http://app.test@evil.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		{name: "userinfo-in-host-field", req: "GET / HTTP/1.1\r\nHost: user@app.test\r\n\r\n", want: 400},
		{name: "scheme-relative-path", req: "GET //app.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 200, host: "app.test", targets: []string{"//app.test/x"}},
		{name: "broken-absolute", req: "GET http:/app.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		{name: "authority-form-on-get", req: "GET app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		{name: "relative", req: "GET x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		// Asterisk form is only for a server-wide OPTIONS (RFC 9112 §3.2.4).
		{name: "options-asterisk", req: "OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 200, host: "app.test", targets: []string{"*"}},
		{name: "get-asterisk", req: "GET * HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		{name: "options-asterisk-suffix", req: "OPTIONS *x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: 400},
		// Host (RFC 9112 §3.2: exactly one; RFC 9110 §7.2; routing ignores
		// case, a port and one trailing dot; the Host is forwarded as sent).
		{name: "host-missing", req: "GET / HTTP/1.1\r\n\r\n", want: 400},
		{name: "host-missing-http10", req: "GET / HTTP/1.0\r\n\r\n", want: 400},
		{name: "host-duplicate-identical", req: "GET / HTTP/1.1\r\nHost: app.test\r\nHost: app.test\r\n\r\n", want: 400},
		{name: "host-duplicate-first-ours", req: "GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n", want: 400},
		{name: "host-duplicate-second-ours", req: "GET / HTTP/1.1\r\nHost: other.test\r\nHost: app.test\r\n\r\n", want: 400},
		{name: "host-list", req: "GET / HTTP/1.1\r\nHost: app.test, other.test\r\n\r\n", want: 400},
		{name: "host-empty", req: "GET / HTTP/1.1\r\nHost:\r\n\r\n", want: 400},
		{name: "host-space-inside", req: "GET / HTTP/1.1\r\nHost: app .test\r\n\r\n", want: 400},
		{name: "host-percent", req: "GET / HTTP/1.1\r\nHost: app%2etest\r\n\r\n", want: 400},
		{name: "host-path", req: "GET / HTTP/1.1\r\nHost: app.test/x\r\n\r\n", want: 400},
		{name: "host-bad-port", req: "GET / HTTP/1.1\r\nHost: app.test:abc\r\n\r\n", want: 400},
		{name: "host-two-ports", req: "GET / HTTP/1.1\r\nHost: app.test:80:80\r\n\r\n", want: 400},
		{name: "host-two-dots", req: "GET / HTTP/1.1\r\nHost: app.test..\r\n\r\n", want: 400},
		{name: "host-nul", req: "GET / HTTP/1.1\r\nHost: app.test\x00\r\n\r\n", want: 400},
		{name: "host-too-long", req: "GET / HTTP/1.1\r\nHost: " + strings.Repeat("a.", 130) + "app.test\r\n\r\n", want: 400},
		{name: "host-case", req: "GET / HTTP/1.1\r\nHost: APP.Test\r\n\r\n", want: 200, host: "APP.Test", targets: []string{"/"}},
		{name: "host-name-case", req: "GET / HTTP/1.1\r\nhOST: app.test\r\n\r\n", want: 200, host: "app.test", targets: []string{"/"}},
		{name: "host-port", req: "GET / HTTP/1.1\r\nHost: app.test:8080\r\n\r\n", want: 200, host: "app.test:8080", targets: []string{"/"}},
		{name: "host-empty-port", req: "GET / HTTP/1.1\r\nHost: app.test:\r\n\r\n", want: 200, host: "app.test:", targets: []string{"/"}},
		{name: "host-trailing-dot", req: "GET / HTTP/1.1\r\nHost: app.test.\r\n\r\n", want: 200, host: "app.test.", targets: []string{"/"}},
		{name: "host-trailing-dot-port", req: "GET / HTTP/1.1\r\nHost: app.test.:80\r\n\r\n", want: 200, host: "app.test.:80", targets: []string{"/"}},
		{name: "host-ows", req: "GET / HTTP/1.1\r\nHost: \tapp.test \r\n\r\n", want: 200, host: "app.test", targets: []string{"/"}},
		{name: "host-ipv6-unknown", req: "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", want: 404},
		{name: "host-unknown", req: "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n", want: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, tc.req, 300*time.Millisecond)
			u.settle(10 * time.Millisecond)
			checkTarget(t, u, res, tc)
		})
	}
}

func checkTarget(t *testing.T, u *recUpstream, res advResult, tc targetCase) {
	t.Helper()
	if len(res.Responses) != 1 {
		t.Fatalf("got %v; want one %d", res, tc.want)
	}
	if s := res.Responses[0].Status; s != tc.want {
		t.Fatalf("got %d; want %d: %v; upstream got%s", s, tc.want, res, u.dump())
	}
	reqs, errs := u.requests()
	if tc.want != 200 {
		if !res.Closed && tc.want == 400 {
			t.Errorf("connection left open after 400")
		}
		if n := u.totalBytes(); n != 0 {
			t.Errorf("answered %d, yet the upstream received%s", tc.want, u.dump())
		}
		return
	}
	if len(reqs) != 1 || len(errs) != 0 {
		t.Fatalf("upstream got %d requests, errors %v; want 1%s", len(reqs), errs, u.dump())
	}
	r := reqs[0]
	fields := lastHead(u)
	if hs := advValues(fields, "Host"); len(hs) != 1 || !strings.EqualFold(hs[0], tc.host) {
		t.Errorf("forwarded Host %q; want [%q]", hs, tc.host)
	}
	if xfh := advValues(fields, "X-Forwarded-Host"); len(xfh) != 1 || !strings.EqualFold(xfh[0], tc.host) {
		t.Errorf("forwarded X-Forwarded-Host %q; want [%q]", xfh, tc.host)
	}
	ok := false
	for _, w := range tc.targets {
		ok = ok || r.Target == w
	}
	if !ok {
		t.Errorf("forwarded target %q; want one of %q", r.Target, tc.targets)
	}
	for _, f := range fields {
		if strings.EqualFold(f.Name, "Authorization") {
			t.Errorf("forwarded Authorization: %s, which the client did not send", f.Value)
		}
	}
}

// CONNECT asks a forward proxy for a tunnel; Agimo is a gateway, so it
// answers 405 (or 400) and never forwards or tunnels it (RFC 9110 §9.3.6).
// Bytes after the CONNECT must be treated as HTTP, never relayed raw.
func TestConnectRefused(t *testing.T) {
	h, u := advSetup(t, oneService)
	for _, tc := range []struct{ name, req string }{
		{"authority", "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n"},
		{"with-payload", "CONNECT app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /inner HTTP/1.1\r\nHost: app.test\r\n\r\n"},
		{"origin-form", "CONNECT / HTTP/1.1\r\nHost: app.test\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			res := advSend(t, h.addr, tc.req, 300*time.Millisecond)
			u.settle(10 * time.Millisecond)
			if len(res.Responses) == 0 {
				t.Fatalf("no response: %v", res)
			}
			if s := res.Responses[0].Status; s != 405 && s != 400 {
				t.Errorf("got %d; want 405 or 400", s)
			}
			if len(res.Responses) != 1 || !res.Closed {
				t.Errorf("got %v; want one answer and a close", res)
			}
			if n := u.totalBytes(); n != 0 {
				t.Errorf("upstream received%s; want nothing", u.dump())
			}
		})
	}
}
