package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agimo/agimo/proxy"
)

// The adversarial tests of issue 6 share this harness: a raw-TCP client
// that sends exact bytes and reads every response, and a recording
// upstream that keeps every byte it receives, so a test asserts exactly
// what the proxy forwarded, with net/http's parser as a second opinion.

// advResponse is one response read off a raw client connection.
type advResponse struct {
	Status  int
	Proto   string
	Header  http.Header
	Body    string
	BodyErr error // non-nil if the body ended before its framing said
}

// advResult is everything one raw exchange produced.
type advResult struct {
	Raw       string        // every byte the proxy sent
	Responses []advResponse // Raw parsed by net/http, in order
	// ParseErr is set when bytes after the last parsed response are not a
	// well-formed response (garbage, or a head cut short).
	ParseErr error
	// Closed reports that the proxy closed (or reset) the connection;
	// false means it was still open after the idle wait.
	Closed bool
}

// statuses lists the status codes of r's responses, for messages.
func (r advResult) statuses() []int {
	var s []int
	for _, x := range r.Responses {
		s = append(s, x.Status)
	}
	return s
}

func (r advResult) String() string {
	return fmt.Sprintf("statuses %v, closed %v, parse error %v, raw %q", r.statuses(), r.Closed, r.ParseErr, clip(r.Raw, 600))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("…(%d more bytes)", len(s)-n)
}

// advSend dials addr, writes raw, and reads until the peer closes or no
// byte arrives for idle. methods are the request methods in order (for
// HEAD responses, which have no body); missing ones are GET.
func advSend(t testing.TB, addr, raw string, idle time.Duration, methods ...string) advResult {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		// The proxy may reject and close before reading everything: still
		// read what it answered.
		t.Logf("write: %v", err)
	}
	return advRead(c, idle, methods...)
}

// advRead reads c until it closes or stays silent for idle, then parses
// what it read as a sequence of responses.
func advRead(c net.Conn, idle time.Duration, methods ...string) advResult {
	var raw bytes.Buffer
	buf := make([]byte, 32<<10)
	var res advResult
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		n, err := c.Read(buf)
		raw.Write(buf[:n])
		if err != nil {
			var ne net.Error
			res.Closed = !(errors.As(err, &ne) && ne.Timeout())
			break
		}
	}
	res.Raw = raw.String()
	res.Responses, res.ParseErr = advParseResponses(res.Raw, methods...)
	return res
}

// advParseResponses parses raw as consecutive HTTP/1.1 responses with
// net/http. A body cut short is kept with its error; anything else that
// does not parse ends the list with an error.
func advParseResponses(raw string, methods ...string) ([]advResponse, error) {
	br := bufio.NewReader(strings.NewReader(raw))
	var out []advResponse
	for i := 0; ; i++ {
		if _, err := br.Peek(1); err == io.EOF {
			return out, nil
		}
		m := "GET"
		if i < len(methods) {
			m = methods[i]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			return out, fmt.Errorf("response %d: %w", len(out)+1, err)
		}
		body, berr := io.ReadAll(resp.Body)
		out = append(out, advResponse{Status: resp.StatusCode, Proto: resp.Proto, Header: resp.Header, Body: string(body), BodyErr: berr})
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			i-- // an interim response answers the same request
		}
		if berr != nil {
			return out, nil
		}
	}
}

// advReq is one request as net/http parsed it from the bytes an upstream
// received.
type advReq struct {
	Method, Target, Proto string
	Host                  string
	Header                http.Header
	Body                  string
	ContentLength         int64
	TransferEncoding      []string
	Trailer               http.Header
}

// advParseRequests parses raw as consecutive requests with net/http: the
// second opinion on what the proxy forwarded. It returns the requests, and
// an error if bytes remain that are not a complete, valid request.
func advParseRequests(raw []byte) ([]advReq, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	var out []advReq
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return out, nil
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return out, fmt.Errorf("request %d: %w", len(out)+1, err)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return out, fmt.Errorf("request %d body: %w", len(out)+1, err)
		}
		out = append(out, advReq{
			Method: req.Method, Target: req.RequestURI, Proto: req.Proto, Host: req.Host,
			Header: req.Header, Body: string(body), ContentLength: req.ContentLength,
			TransferEncoding: req.TransferEncoding, Trailer: req.Trailer,
		})
	}
}

// recUpstream is a TCP upstream on 127.0.0.1:0 that records every byte
// it receives, per connection, parses requests with net/http and answers
// each with respond's bytes. A request it cannot parse gets no answer;
// the rest of that connection is still recorded.
type recUpstream struct {
	ln      net.Listener
	accepts atomic.Int64
	mu      sync.Mutex // guards the fields below
	respond func(n int, req *http.Request, body []byte) string
	// serve, if set, replaces the parse-and-respond loop for each new
	// connection, which closes when it returns; what it reads through r
	// is recorded.
	serve func(c net.Conn, r io.Reader)
	conns []*bytes.Buffer
	nreq  int
	wg    sync.WaitGroup
	done  chan struct{}
}

// setRespond sets the answer to each later request.
func (u *recUpstream) setRespond(f func(n int, req *http.Request, body []byte) string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.respond = f
}

// setServe makes each later connection run f instead of the parse-and-
// respond loop. Connections the proxy already pooled keep the loop:
// advSetup leaves none.
func (u *recUpstream) setServe(f func(c net.Conn, r io.Reader)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.serve = f
}

// okResponse is recUpstream's default answer.
const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func newRecUpstream(t testing.TB) *recUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &recUpstream{ln: ln, done: make(chan struct{})}
	u.respond = func(int, *http.Request, []byte) string { return okResponse }
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		var open sync.Map
		defer open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepts.Add(1)
			open.Store(c, nil)
			rec := &lockedBuffer{mu: &u.mu}
			u.mu.Lock()
			u.conns = append(u.conns, &rec.b)
			u.mu.Unlock()
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer open.Delete(c)
				defer c.Close()
				u.handle(c, io.TeeReader(c, rec))
			}()
		}
	}()
	t.Cleanup(u.close)
	return u
}

func (u *recUpstream) close() {
	select {
	case <-u.done:
		return
	default:
	}
	close(u.done)
	u.ln.Close()
	u.wg.Wait()
}

func (u *recUpstream) handle(c net.Conn, r io.Reader) {
	u.mu.Lock()
	serve := u.serve
	u.mu.Unlock()
	if serve != nil {
		serve(c, r) // then the connection closes
		return
	}
	br := bufio.NewReader(r)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			io.Copy(io.Discard, br) // keep recording until the proxy closes
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			io.Copy(io.Discard, br)
			return
		}
		u.mu.Lock()
		n := u.nreq
		u.nreq++
		respond := u.respond
		u.mu.Unlock()
		resp := respond(n, req, body)
		if resp == "" {
			continue
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
		if strings.Contains(strings.ToLower(resp), "\r\nconnection: close\r\n") {
			return
		}
	}
}

func (u *recUpstream) addr() string { return u.ln.Addr().String() }

// received returns a copy of the bytes of each connection, in accept order.
func (u *recUpstream) received() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([][]byte, len(u.conns))
	for i, b := range u.conns {
		out[i] = bytes.Clone(b.Bytes())
	}
	return out
}

// totalBytes is the number of bytes received on all connections.
func (u *recUpstream) totalBytes() int {
	n := 0
	for _, b := range u.received() {
		n += len(b)
	}
	return n
}

// requests parses every connection's bytes with net/http and returns all
// requests; errs has one entry per connection whose bytes did not parse
// completely.
func (u *recUpstream) requests() (reqs []advReq, errs []error) {
	for i, raw := range u.received() {
		rs, err := advParseRequests(raw)
		reqs = append(reqs, rs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream connection %d (%q): %w", i, clip(string(raw), 400), err))
		}
	}
	return reqs, errs
}

// dump renders what the upstream received, for failure messages.
func (u *recUpstream) dump() string {
	var b strings.Builder
	for i, raw := range u.received() {
		if len(raw) == 0 {
			continue // a pooled connection idle during this exchange
		}
		fmt.Fprintf(&b, "\n  conn %d: %q", i, clip(string(raw), 800))
	}
	if b.Len() == 0 {
		return " nothing"
	}
	return b.String()
}

// settle waits until the upstream's byte count stops changing, so a test
// reads what was forwarded only after the proxy is done forwarding.
// waitAny waits up to d until the upstream has received a byte: the
// release of a parked request may take a while on a loaded machine.
func (u *recUpstream) waitAny(d time.Duration) {
	for deadline := time.Now().Add(d); u.totalBytes() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

func (u *recUpstream) settle(quiet time.Duration) {
	last := -1
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		n := u.totalBytes()
		if n == last {
			return
		}
		last = n
		time.Sleep(quiet)
	}
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// reset forgets everything received so far (connections stay open and
// keep recording).
func (u *recUpstream) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, b := range u.conns {
		b.Reset()
	}
	u.nreq = 0
	u.accepts.Store(0)
}

// advSetup starts a harness with one ready service backed by a fresh
// recording upstream, and waits until a probe request is forwarded (the
// informer sees the EndpointSlice a moment after setEndpoints returns).
// The probe's upstream connection is closed, so a later setServe applies
// to every request, and the probe is forgotten.
func advSetup(t testing.TB, cfgTOML string, opts ...func(*proxy.Options)) (*harness, *recUpstream) {
	t.Helper()
	h := startHarness(t, cfgTOML, opts...)
	u := newRecUpstream(t)
	u.setRespond(func(int, *http.Request, []byte) string {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
	})
	h.setEndpoints("apps", "app", true, u.addr())
	res := advSend(t, h.addr, "GET /probe HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 5*time.Second)
	if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
		t.Fatalf("probe: %v; want one 200", res)
	}
	u.settle(10 * time.Millisecond)
	u.setRespond(func(int, *http.Request, []byte) string { return okResponse })
	u.reset()
	return h, u
}

// advField is one header field line of a raw head, as sent.
type advField struct{ Name, Value string }

// advHead splits the first message head in raw into its start line and
// fields, without any normalisation: what a strict parser would see.
func advHead(raw string) (start string, fields []advField) {
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		fields = append(fields, advField{k, strings.Trim(v, " \t")})
	}
	return lines[0], fields
}

// values returns the values of every field named name (any case).
func advValues(fields []advField, name string) []string {
	var out []string
	for _, f := range fields {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// advValidToken reports whether s is an RFC 9110 §5.6.2 token, the
// syntax of a field name.
func advValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// advValidValue reports whether s is a valid field value (RFC 9110 §5.5):
// visible characters, SP, HTAB and obs-text; no CR, LF, NUL or other CTL.
func advValidValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// strictCheck reports what a strict recipient would reject in the first
// request head of raw: invalid names or values, and framing fields that
// contradict each other (RFC 9112 §6.1, §6.3).
func advStrictCheck(raw string) []string {
	start, fields := advHead(raw)
	var bad []string
	if !strings.HasSuffix(start, " HTTP/1.1") && !strings.HasSuffix(start, " HTTP/1.0") {
		bad = append(bad, fmt.Sprintf("request line %q is not HTTP/1.0 or HTTP/1.1", start))
	}
	for _, f := range fields {
		if !advValidToken(f.Name) {
			bad = append(bad, fmt.Sprintf("invalid field name %q", f.Name))
		}
		if !advValidValue(f.Value) {
			bad = append(bad, fmt.Sprintf("invalid value of %s: %q", f.Name, f.Value))
		}
	}
	cl, te := advValues(fields, "Content-Length"), advValues(fields, "Transfer-Encoding")
	if len(cl) > 1 {
		bad = append(bad, fmt.Sprintf("%d Content-Length fields %q", len(cl), cl))
	}
	if len(te) > 1 {
		bad = append(bad, fmt.Sprintf("%d Transfer-Encoding fields %q", len(te), te))
	}
	if len(cl) > 0 && len(te) > 0 {
		bad = append(bad, "both Content-Length and Transfer-Encoding")
	}
	if h := advValues(fields, "Host"); len(h) != 1 {
		bad = append(bad, fmt.Sprintf("%d Host fields %q", len(h), h))
	}
	return bad
}
