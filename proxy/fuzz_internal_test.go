package proxy

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"unicode"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/fields"
	"github.com/agimo/agimo/route"
)

// Fuzz targets for the header logic of issue 6. Each checks the code
// against an independent reading of the RFC, not against itself. Run one
// with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzIsUpgrade$' -fuzztime 30s ./proxy
//
// Seed corpora are in testdata/fuzz/<name>/.

// ows trims RFC 9110 §5.6.3 optional whitespace: SP and HTAB only.
func ows(s string) string { return strings.Trim(s, " \t") }

// listElems splits a field value into RFC 9110 §5.6.1 list elements,
// trimmed of OWS, dropping empty ones.
func listElems(values ...string) []string {
	var out []string
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			if e = ows(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// readHead parses raw as a request head with fasthttp, as the server
// does, or reports false.
func readHead(raw []byte) (*fasthttp.RequestHeader, bool) {
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
		return nil, false
	}
	return &h, true
}

func values(h *fasthttp.RequestHeader, name string) []string {
	var out []string
	for _, v := range h.PeekAll(name) {
		out = append(out, string(v))
	}
	return out
}

// FuzzIsUpgrade: for any request head fasthttp accepts, isUpgrade is true
// exactly when the request is an HTTP/1.1 GET without a body whose
// Connection fields list the token "upgrade" and whose Upgrade fields list
// "websocket" (RFC 6455 §4.1; RFC 9110 §7.8 tokens, case-insensitive, in
// comma lists split over any number of lines, with only SP/HTAB as
// optional whitespace). A request with a body is never an upgrade: its
// body would reach the upstream as tunnel bytes.
func FuzzIsUpgrade(f *testing.F) {
	for _, s := range []string{
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket/13\r\n\r\n",
		"GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgradex\r\nUpgrade: websocket\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection:\tupgrade\t\r\nUpgrade:\twebsocket ,\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, ok := readHead(raw)
		if !ok {
			return
		}
		// No body: no Transfer-Encoding line at all, and no or a zero
		// Content-Length (RFC 9112 §6.3), read from the raw head.
		n := h.ContentLength()
		teLine := hasFieldLine(raw, "Transfer-Encoding")
		noBody := !teLine && (n == 0 || n == -2)
		want := h.IsGet() && h.IsHTTP11() && noBody &&
			containsFold(listElems(values(h, fasthttp.HeaderConnection)...), "upgrade") &&
			containsFold(listElems(values(h, fasthttp.HeaderUpgrade)...), "websocket")
		got := isUpgrade(h)
		if got != want {
			t.Errorf("isUpgrade = %v; want %v for head %q", got, want, raw)
		}
	})
}

// hasFieldLine reports whether the raw head has a field line named name.
func hasFieldLine(raw []byte, name string) bool {
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for _, l := range bytes.Split(head, []byte("\n")) {
		if k, _, ok := bytes.Cut(l, []byte(":")); ok && strings.EqualFold(string(bytes.TrimSpace(k)), name) {
			return true
		}
	}
	return false
}

// looseSpaceOnly reports whether some field value holds whitespace other
// than SP and HTAB, which bytes.TrimSpace trims but RFC 9110 OWS is not.
func looseSpaceOnly(lists ...[]string) bool {
	for _, l := range lists {
		for _, v := range l {
			if strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) && r != ' ' && r != '\t' }) >= 0 {
				return true
			}
		}
	}
	return false
}

// hopByHopRFC are the fields RFC 9110 §7.6.1 (and Proxy-*, Keep-Alive,
// which deployed proxies treat alike) make hop-by-hop. Trailer, on
// httputil's list, is end-to-end (RFC 9110 §6.6.2).
var hopByHopRFC = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Upgrade"}

// FuzzIsHopByHop: fields.IsHopByHop(k, listed) strips everything RFC 9110 §7.6.1
// says must not be forwarded — the standard hop-by-hop fields and every
// field named (case-insensitively, OWS-trimmed) in the Connection value
// listed — and nothing else: a field it strips is one of those, allowing
// only for wider whitespace trimming.
func FuzzIsHopByHop(f *testing.F) {
	for _, s := range [][2]string{
		{"Keep-Alive", ""}, {"keep-alive", "close"}, {"X-Secret", "keep-alive, X-Secret"},
		{"x-secret", "X-SECRET"}, {"X-A", " ,, x-a ,"}, {"X-A", "X-AB"}, {"X-AB", "X-A"},
		{"Upgrade", "Upgrade"}, {"Content-Length", "Content-Length"}, {"TE", ""}, {"Trailers", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, k, listed string) {
		got := fields.IsHopByHop([]byte(k), []byte(listed))
		must := containsFold(hopByHopRFC, k) || containsFold(listElems(listed), k)
		if must && !got {
			t.Errorf("fields.IsHopByHop(%q, %q) = false; the field must be stripped", k, listed)
		}
		may := must
		for _, e := range strings.Split(listed, ",") {
			may = may || strings.EqualFold(strings.TrimSpace(e), k)
		}
		if got && !may {
			t.Errorf("fields.IsHopByHop(%q, %q) = true; the field is neither hop-by-hop nor listed", k, listed)
		}
	})
}

// FuzzStripConnectionListed: for a Connection value v,
// stripConnectionListed deletes every field v lists (each list element
// that is a valid field name, OWS-trimmed) and deletes only list elements:
// never an empty name, never a name containing a comma.
func FuzzStripConnectionListed(f *testing.F) {
	for _, s := range []string{"", "close", "keep-alive, X-Secret", " ,x-a,, X-B ,", "X-A,X-A", "\tX-T\t", "a b, c", ","} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var deleted []string
		fields.StripConnectionListed([]byte(v), func(k []byte) { deleted = append(deleted, string(k)) })
		for _, e := range listElems(v) {
			if isToken(e) && !containsFold(deleted, e) {
				t.Errorf("fields.StripConnectionListed(%q) did not delete %q (deleted %q)", v, e, deleted)
			}
		}
		var loose []string
		for _, e := range strings.Split(v, ",") {
			loose = append(loose, strings.TrimSpace(e))
		}
		for _, d := range deleted {
			if d == "" || strings.Contains(d, ",") || !containsFold(loose, d) {
				t.Errorf("fields.StripConnectionListed(%q) deleted %q, which is not one of its elements", v, d)
			}
		}
	})
}

// FuzzPrepareRequest: for any request head fasthttp accepts,
// prepareRequest leaves a head in which (RFC 9110 §7.6.1) no standard
// hop-by-hop field and no field named in any Connection line remains —
// except the framing fields and Host, which a Connection line cannot
// remove — and (issue 2) exactly one X-Forwarded-For, X-Forwarded-Proto
// and X-Forwarded-Host, with the proxy's own values (peer address,
// "http", the host routed by: an absolute-form target's authority wins
// over Host, RFC 9112 §3.2.2). A Trailer field left announces no
// hop-by-hop or listed field.
func FuzzPrepareRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For, Host\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: x\r\nUpgrade: h2c\r\nTrailer: X\r\nProxy-Connection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req fasthttp.Request
		if err := req.Header.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			return
		}
		conns := values(&req.Header, fasthttp.HeaderConnection)
		listed := listElems(conns...)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5555}, nil)
		routed, ok := route.Authority(ctx.Request.Header.RequestURI(), ctx.Request.Header.Host())
		if !ok {
			return // refused before routing
		}
		host := string(routed)
		prepareRequest(&ctx, nil, false)

		h := &ctx.Request.Header
		present := map[string]bool{}
		for k := range h.All() {
			present[strings.ToLower(string(k))] = true
		}
		for _, k := range hopByHopRFC {
			if present[strings.ToLower(k)] {
				t.Errorf("hop-by-hop %s forwarded (head %q)", k, raw)
			}
		}
		for _, l := range listed {
			switch strings.ToLower(l) {
			case "host", "content-length", "transfer-encoding", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host":
				continue
			}
			if isToken(l) && present[strings.ToLower(l)] {
				t.Errorf("%s, listed in Connection, forwarded (head %q)", l, raw)
			}
		}
		for _, name := range listElems(values(h, fasthttp.HeaderTrailer)...) {
			if containsFold(hopByHopRFC, name) || containsFold(listed, name) {
				t.Errorf("Trailer announces %s, a hop-by-hop field (head %q)", name, raw)
			}
		}
		for k, want := range map[string]string{"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "http", "X-Forwarded-Host": host} {
			if got := values(h, k); len(got) != 1 || got[0] != want {
				t.Errorf("%s = %q; want [%q] (head %q)", k, got, want, raw)
			}
		}
	})
}

// headHangsRef is an independent reading of which first heads fasthttp
// would wait on for ever: split at LF, skip empty lines before the
// request line; the first empty line after it ends the head, and unless
// it and the line before it both end in CRLF, there is no CRLF CRLF.
// ok is false while no head end is in sight.
func headHangsRef(in []byte) (hang, ok bool) {
	lines := strings.Split(string(in), "\n")
	lines = lines[:len(lines)-1] // the last element has no LF yet
	seen := false
	for k, l := range lines {
		content := strings.TrimSuffix(l, "\r")
		if content != "" {
			seen = true
			continue
		}
		if !seen {
			continue
		}
		crlfBlank := l == "\r"
		prevCRLF := strings.HasSuffix(lines[k-1], "\r")
		return !(crlfBlank && prevCRLF), true
	}
	return false, false
}

// FuzzScanFirstHead checks clientConn's first-head scanner. Invariants:
// its verdict agrees with headHangsRef, whatever the split of the bytes
// into reads, and it stops scanning at the head's end.
func FuzzScanFirstHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\n",
		"\r\n\nGET / HTTP/1.1\r\nX: \r\r\n\r\nbody\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		want, done := headHangsRef(in)
		for _, step := range []int{len(in), 1, int(split)%7 + 1} {
			if step == 0 {
				continue
			}
			c := newClientConn(nil)
			got := false
			for i := 0; i < len(in) && c.first; i += step {
				got = c.scanFirstHead(in[i:min(i+step, len(in))])
			}
			if c.first == done {
				t.Fatalf("%q in reads of %d: head end seen %v; want %v", in, step, !c.first, done)
			}
			if got != want {
				t.Fatalf("%q in reads of %d: hang %v; want %v", in, step, got, want)
			}
		}
	})
}
