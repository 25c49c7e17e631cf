package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agimo/agimo/proxy"
)

// Failures on the client's side of a request (issue 10, items 5 and 6): a
// client that stalls its upload, leaves it, or stops reading its response
// is cut off after client_body_timeout or send_timeout, frees its upstream
// connection, and counts in agimo_client_errors_total, never as an
// upstream error; a full upstream pool answers 503, not 502.

// clientConf is oneService with extra top-level lines and extra keys for
// its service.
func clientConf(top, svc string) string {
	return strings.Replace(oneService, `timeout = "2s"`, top, 1) + svc + "\n"
}

// upstreamErrors sums agimo_upstream_errors_total over every kind.
func (h *harness) upstreamErrors() (sum float64, text string) {
	var b strings.Builder
	h.set.WritePrometheus(&b)
	var nonzero []string
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, `agimo_upstream_errors_total{host="app.test",`); ok && !strings.HasSuffix(v, " 0") {
			f, _ := strconv.ParseFloat(v[strings.LastIndexByte(v, ' ')+1:], 64)
			sum += f
			nonzero = append(nonzero, line)
		}
	}
	return sum, strings.Join(nonzero, "; ")
}

func (h *harness) wantNoUpstreamErrors() {
	h.t.Helper()
	if n, text := h.upstreamErrors(); n != 0 {
		h.t.Errorf("agimo_upstream_errors_total: %s; want all 0", text)
	}
}

func clientErrors(kind string) string {
	return `agimo_client_errors_total{host="app.test",kind="` + kind + `"}`
}

// await returns the next value from ch. The limit only turns a hang
// (the behaviour before the fix) into a failure; it is no timing claim.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s after 20s", what)
		panic("unreachable")
	}
}

// bigChunk is more than the proxy's 32 KiB upstream write buffer, so the
// upstream sees the request head before the client's body is over.
var bigChunk = strings.Repeat("x", 64<<10)

// holdUploads makes u signal on held when a request head arrives, then
// read until the proxy closes the connection and signal on closed. A GET
// is answered 200 at once.
func holdUploads(u *recUpstream, held, closed chan<- string) {
	u.setServe(func(c net.Conn, r io.Reader) {
		br := bufio.NewReader(r)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Method == "GET" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			return
		}
		held <- req.URL.Path
		io.Copy(io.Discard, br)
		closed <- req.URL.Path
	})
}

// A client that leaves in the middle of its upload, or sends a malformed
// body, is counted in agimo_client_errors_total, and every upstream error
// kind stays 0: no client can inflate the series operators alert on.
// Before the fix, a Content-Length body cut short reached fasthttp as a
// clean end and was counted as kind="protocol".
func TestClientBodyFailureIsClientError(t *testing.T) {
	const cl = "POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 131072\r\n\r\n"
	const chunked = "POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
	chunk := fmt.Sprintf("%x\r\n%s\r\n", len(bigChunk), bigChunk)
	for _, tc := range []struct {
		name   string
		first  string // sent before the upstream has the head
		then   func(c *net.TCPConn)
		kind   string
		status int // the answer the client reads; 0 if it left
	}{
		{"content-length half then close", cl + bigChunk, func(c *net.TCPConn) { c.Close() }, "aborted", 0},
		{"content-length half then reset", cl + bigChunk, func(c *net.TCPConn) { c.SetLinger(0); c.Close() }, "aborted", 0},
		{"content-length half then half-close", cl + bigChunk, func(c *net.TCPConn) { c.CloseWrite() }, "aborted", 400},
		{"chunked cut at a chunk boundary", chunked + chunk, func(c *net.TCPConn) { c.Close() }, "aborted", 0},
		{"chunked, malformed chunk size", chunked + chunk, func(c *net.TCPConn) { io.WriteString(c, "zz\r\n") }, "bad_body", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, u := advSetup(t, oneService)
			held, closed := make(chan string, 1), make(chan string, 1)
			holdUploads(u, held, closed)
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.first)
			await(t, held, "upstream request")
			tc.then(c.(*net.TCPConn))
			if tc.status != 0 {
				res := advRead(c, 5*time.Second)
				if len(res.Responses) != 1 || res.Responses[0].Status != tc.status || !res.Closed {
					t.Errorf("client got %v; want one %d, then the connection closed", res, tc.status)
				}
			}
			await(t, closed, "close of the upstream connection") // the upstream request was abandoned
			h.waitMetric(clientErrors(tc.kind), 1)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
			h.wantNoUpstreamErrors()
		})
	}
}

// A request body that stops arriving is answered 408 after
// client_body_timeout (here the service's override of the top-level
// default) counted from the last byte, not from the start of the body,
// and its upstream request is abandoned, freeing the connection. Before
// the fix it held both connections for ever.
func TestClientBodyTimeout(t *testing.T) {
	for _, tc := range []struct{ name, head, body string }{
		{"content-length", "POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10485760\r\n\r\n", bigChunk},
		{"chunked", "POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n", fmt.Sprintf("%x\r\n%s\r\n", len(bigChunk), bigChunk)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, u := advSetup(t, clientConf(`timeout = "2s"`+"\nclient_body_timeout = \"60s\"", `client_body_timeout = "1s"`))
			held, closed := make(chan string, 1), make(chan string, 1)
			holdUploads(u, held, closed)
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.head)
			// Trickled for longer than the timeout, each piece well within
			// it: the body is slow, not stalled, and must not be cut.
			for range 6 {
				io.WriteString(c, tc.body[:len(tc.body)/2])
				time.Sleep(250 * time.Millisecond)
				io.WriteString(c, tc.body[len(tc.body)/2:])
			}
			await(t, held, "upstream request")
			res := advRead(c, 10*time.Second)
			if len(res.Responses) != 1 || res.Responses[0].Status != http.StatusRequestTimeout || !res.Closed {
				t.Fatalf("client got %v; want one 408, then the connection closed", res)
			}
			await(t, closed, "close of the upstream connection")
			h.waitMetric(clientErrors("body_timeout"), 1)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
			h.wantNoUpstreamErrors()
		})
	}
}

// The shape of issue 10's report at small scale: stalled uploads fill an
// endpoint's connection pool (capped at 2 here, 1024 in production) and
// every other request to the service waits behind them. client_body_timeout
// frees their connections, so the waiting request is served. Before the
// fix the uploads held the pool for ever and the GET got 502 "protocol".
func TestStalledUploadsFreeUpstreamPool(t *testing.T) {
	h, u := advSetup(t, clientConf("timeout = \"5s\"\nupstream_timeout = \"3s\"", `client_body_timeout = "1s"`))
	proxy.SetUpstreamConns(h.proxy, 2)
	held, closed := make(chan string, 2), make(chan string, 2)
	holdUploads(u, held, closed)
	var stalled []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /stall%d HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10485760\r\n\r\n%s", i, bigChunk)
		stalled = append(stalled, c)
	}
	await(t, held, "upstream request")
	await(t, held, "upstream request") // the pool is full
	res := advSend(t, h.addr, "GET /other HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 10*time.Second)
	if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
		t.Errorf("request behind the stalled uploads got %v; want 200", res)
	}
	for i, c := range stalled {
		res := advRead(c, 10*time.Second)
		if len(res.Responses) != 1 || res.Responses[0].Status != http.StatusRequestTimeout {
			t.Errorf("stalled upload %d got %v; want 408", i, res)
		}
	}
	await(t, closed, "close of the upstream connection")
	await(t, closed, "close of the upstream connection")
	h.waitMetric(clientErrors("body_timeout"), 2)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	h.wantNoUpstreamErrors()
}

// A request that finds its endpoint's pool full waits for a free
// connection up to the service's timeout, then gets 503 with Retry-After
// and kind="pool_full", never 502 "protocol" (before the fix: 502 after
// upstream_timeout).
func TestUpstreamPoolFull(t *testing.T) {
	h, u := advSetup(t, clientConf("timeout = \"300ms\"\nupstream_timeout = \"2s\"", ""))
	proxy.SetUpstreamConns(h.proxy, 1)
	held, release := make(chan struct{}), make(chan struct{})
	var heldOnce sync.Once
	u.setServe(func(c net.Conn, r io.Reader) {
		if _, err := http.ReadRequest(bufio.NewReader(r)); err != nil {
			return
		}
		heldOnce.Do(func() { close(held) })
		<-release
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	first := make(chan advResult, 1)
	go func() {
		first <- advSend(t, h.addr, "GET /slow HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 10*time.Second)
	}()
	await(t, held, "upstream request")
	res := advSend(t, h.addr, "GET /next HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 10*time.Second)
	close(release)
	if len(res.Responses) != 1 || res.Responses[0].Status != http.StatusServiceUnavailable || res.Responses[0].Header.Get("Retry-After") == "" {
		t.Errorf("request to a full pool got %v; want 503 with Retry-After", res)
	}
	if r := await(t, first, "answer to the first request"); len(r.Responses) != 1 || r.Responses[0].Status != 200 {
		t.Errorf("request holding the pool got %v; want 200", r)
	}
	if got := h.metric(`agimo_upstream_errors_total{host="app.test",kind="pool_full"}`); got != 1 {
		t.Errorf(`agimo_upstream_errors_total{kind="pool_full"} = %v; want 1`, got)
	}
	if got := h.metric(`agimo_upstream_errors_total{host="app.test",kind="protocol"}`); got != 0 {
		t.Errorf(`agimo_upstream_errors_total{kind="protocol"} = %v; want 0`, got)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// A client that stops reading a large or endless (SSE) response is cut
// off after send_timeout (the service's override): the upstream's
// connection is closed, the request leaves the active gauge, and it counts
// as the client's failure. Before the fix both connections stayed open
// for as long as the client did.
func TestSendTimeout(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n"},
		{"sse", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, u := advSetup(t, clientConf(`timeout = "2s"`, `send_timeout = "300ms"`))
			upDone := make(chan error, 1)
			u.setServe(func(c net.Conn, r io.Reader) {
				if _, err := http.ReadRequest(bufio.NewReader(r)); err != nil {
					upDone <- err
					return
				}
				event := fmt.Sprintf("%x\r\ndata: %s\n\n\r\n", len(bigChunk)+8, bigChunk)
				if tc.name != "sse" {
					event = bigChunk
				}
				_, err := io.WriteString(c, tc.head)
				for err == nil {
					_, err = io.WriteString(c, event)
				}
				upDone <- err // the proxy closed the connection
			})
			// A small receive buffer, so the client's side fills fast.
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			}}
			c, err := d.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: app.test\r\n\r\n")
			// The client reads nothing.
			t.Logf("upstream write ended: %v", await(t, upDone, "close of the upstream connection"))
			h.waitMetric(clientErrors("send_timeout"), 1)
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
			h.wantNoUpstreamErrors()
			// The client's connection was closed too: reading what was
			// sent ends at its end, not with a timeout.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("client connection still open after send_timeout")
			}
		})
	}
}
