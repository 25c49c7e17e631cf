package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket tests of issue 3: a real WebSocket library on both ends,
// through a real proxy. Shared helpers are in tunnel_test.go.

// Text, binary, a 16 MiB message and a fragmented one pass both ways
// through one tunnel, which counts as an active request and an open
// tunnel while it lives, and its bytes each way.
func TestWebSocketMessages(t *testing.T) {
	h := startHarness(t, oneService)
	up := wsUpstream(t, wsEcho)
	h.setEndpoints("apps", "app", true, up.addr())
	c := h.dialWS(t, "/echo")

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	for _, tc := range []struct {
		name  string
		kind  int
		parts [][]byte // written with several Writes into one NextWriter
	}{
		{"text", websocket.TextMessage, [][]byte{[]byte("hello, tunnel")}},
		{"binary", websocket.BinaryMessage, [][]byte{{0, 1, 2, 0xff, 0xfe, '\r', '\n'}}},
		{"16MiB", websocket.BinaryMessage, [][]byte{big}},
		// With the client's 512-byte write buffer, each part goes out as
		// continuation frames: one message in dozens of fragments.
		{"fragmented", websocket.TextMessage, bytes.SplitAfter(bytes.Repeat([]byte("fragment;"), 2000), []byte(";"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := c.NextWriter(tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.parts {
				if _, err := w.Write(p); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			kind, got, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if want := bytes.Join(tc.parts, nil); kind != tc.kind || !bytes.Equal(got, want) {
				t.Fatalf("got type %d, %d bytes; want type %d, %d bytes (equal=%v)", kind, len(got), tc.kind, len(want), bytes.Equal(got, want))
			}
		})
	}
	if got := h.metric(`agimo_active_requests{host="app.test"}`); got != 1 {
		t.Errorf("active requests with a tunnel open = %v; want 1", got)
	}
	if got := h.metric(`agimo_open_tunnels{host="app.test"}`); got != 1 {
		t.Errorf("open tunnels = %v; want 1", got)
	}
	c.Close()
	h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	for _, dir := range []string{"up", "down"} {
		if got := h.metric(`agimo_tunnel_bytes_total{host="app.test",direction="` + dir + `"}`); got < 16<<20 {
			t.Errorf("tunnel bytes %s = %v; want at least 16 MiB", dir, got)
		}
	}
}

// Pings are answered with pongs both ways (RFC 6455 §5.5.2).
func TestWebSocketPingPong(t *testing.T) {
	h := startHarness(t, oneService)
	serverPong := make(chan string, 1)
	up := wsUpstream(t, func(c *websocket.Conn) {
		c.SetPongHandler(func(s string) error { serverPong <- s; return nil })
		if err := c.WriteControl(websocket.PingMessage, []byte("from-server"), time.Now().Add(5*time.Second)); err != nil {
			return
		}
		wsEcho(c) // reads, so the default ping handler answers
	})
	h.setEndpoints("apps", "app", true, up.addr())
	c := h.dialWS(t, "/")
	clientPong := make(chan string, 1)
	c.SetPongHandler(func(s string) error { clientPong <- s; return nil })
	if err := c.WriteControl(websocket.PingMessage, []byte("from-client"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Control frames are handled while reading: read until the echo of a
	// message sent after the ping.
	if err := c.WriteMessage(websocket.TextMessage, []byte("marker")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "marker" {
		t.Fatalf("got %q, %v; want marker", m, err)
	}
	for _, tc := range []struct {
		name string
		ch   chan string
		want string
	}{{"client's ping", clientPong, "from-client"}, {"server's ping", serverPong, "from-server"}} {
		select {
		case got := <-tc.ch:
			if got != tc.want {
				t.Errorf("%s: pong %q; want %q", tc.name, got, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: no pong", tc.name)
		}
	}
}

// Close frames and their codes pass both ways (RFC 6455 §5.5.1, §7.4).
func TestWebSocketCloseCodes(t *testing.T) {
	h := startHarness(t, oneService)
	serverSaw := make(chan int, 1)
	up := wsUpstream(t, func(c *websocket.Conn) {
		for {
			_, m, err := c.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				serverSaw <- ce.Code // the default handler echoes the close
				return
			}
			if err != nil {
				return
			}
			if string(m) == "close-please" {
				c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "server says bye"))
			}
		}
	})
	h.setEndpoints("apps", "app", true, up.addr())

	t.Run("client closes", func(t *testing.T) {
		c := h.dialWS(t, "/")
		if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "client says bye")); err != nil {
			t.Fatal(err)
		}
		select {
		case code := <-serverSaw:
			if code != 4001 {
				t.Errorf("server got close code %d; want 4001", code)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("server saw no close")
		}
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, 4001) {
			t.Errorf("client got %v; want the echoed close 4001", err)
		}
	})
	t.Run("server closes", func(t *testing.T) {
		c := h.dialWS(t, "/")
		if err := c.WriteMessage(websocket.TextMessage, []byte("close-please")); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4002 || ce.Text != "server says bye" {
			t.Fatalf("client got %v; want close 4002 %q", err, "server says bye")
		}
	})
	h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// The client's first frame sent in the same write as its handshake is
// buffered by fasthttp behind the request head: it must still reach the
// upstream, after the 101.
func TestWebSocketFirstFrameWithHandshake(t *testing.T) {
	h := startHarness(t, oneService)
	up := wsUpstream(t, wsEcho)
	h.setEndpoints("apps", "app", true, up.addr())
	c, br, resp := rawUpgrade(t, h.addr, wsFrame(websocket.TextMessage, []byte("early bird"), true))
	defer c.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("status %d; want 101", resp.StatusCode)
	}
	op, payload := readFrame(t, c, br)
	if op != websocket.TextMessage || string(payload) != "early bird" {
		t.Fatalf("got opcode %d %q; want text %q", op, payload, "early bird")
	}
}

// The upstream's first frame sent in the same write as its 101 sits in the
// proxy's reader behind the head: it must reach the client.
func TestWebSocketFirstFrameWith101(t *testing.T) {
	h := startHarness(t, oneService)
	addr := listenRaw(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		msg := switchHead(req.Header.Get("Sec-WebSocket-Key")) + string(wsFrame(websocket.TextMessage, []byte("welcome"), false))
		io.WriteString(c, msg) // one write
		io.Copy(io.Discard, c)
	})
	h.setEndpoints("apps", "app", true, addr)
	c := h.dialWS(t, "/")
	_, m, err := c.ReadMessage()
	if err != nil || string(m) != "welcome" {
		t.Fatalf("got %q, %v; want welcome", m, err)
	}
}

// An upgrade to a service that is not ready parks like any request and is
// tunnelled once the service turns ready.
func TestWebSocketParkedReleased(t *testing.T) {
	h := startHarness(t, oneService)
	up := wsUpstream(t, wsEcho)
	done := make(chan *websocket.Conn, 1)
	go func() {
		c, _, err := h.wsDialer().Dial("ws://app.test/", nil)
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", true, up.addr())
	c := <-done
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("after park")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "after park" {
		t.Fatalf("got %q, %v; want %q", m, err, "after park")
	}
}

// A parked upgrade whose client sent its first frame right behind the
// handshake gets that frame through once released: the frame waits in the
// parking lot with the head, then in the replayed connection's buffers.
func TestWebSocketParkedWithFirstFrame(t *testing.T) {
	h := startHarness(t, oneService)
	up := wsUpstream(t, wsEcho)
	type result struct {
		c    net.Conn
		br   *bufio.Reader
		resp *http.Response
	}
	done := make(chan result, 1)
	go func() {
		c, br, resp := rawUpgrade(t, h.addr, wsFrame(websocket.TextMessage, []byte("waited"), true))
		done <- result{c, br, resp}
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", true, up.addr())
	res := <-done
	defer res.c.Close()
	if res.resp.StatusCode != 101 {
		t.Fatalf("status %d; want 101", res.resp.StatusCode)
	}
	if op, payload := readFrame(t, res.c, res.br); op != websocket.TextMessage || string(payload) != "waited" {
		t.Fatalf("got opcode %d %q; want text %q", op, payload, "waited")
	}
}

// An upstream that answers an upgrade with anything but 101 has its answer
// relayed, and the connection closes: whatever the client sends next on
// it, pipelined with the handshake or after the answer, never reaches the
// upstream (issue 3: no tunnel on the client's word alone).
func TestUpgradeRefusedNeverTunnels(t *testing.T) {
	for _, tc := range []struct {
		name, answer, wantBody string
		status                 int
	}{
		{"200", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain", "plain", 200},
		{"403", "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnope\r\n0\r\n\r\n", "nope", 403},
		{"426", "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nSec-WebSocket-Version: 13\r\n\r\n", "", 426},
		// A field named on the second Connection line is hop-by-hop too
		// (RFC 9110 §7.6.1).
		{"split-connection", "HTTP/1.1 403 Forbidden\r\nConnection: keep-alive\r\nConnection: X-Hop\r\nX-Hop: secret\r\nContent-Length: 4\r\n\r\nnope", "nope", 403},
	} {
		for _, when := range []string{"pipelined", "after"} {
			t.Run(tc.name+"/"+when, func(t *testing.T) {
				h := startHarness(t, oneService)
				var mu sync.Mutex
				var got bytes.Buffer // everything the upstream received
				closed := make(chan struct{})
				addr := listenRaw(t, func(c net.Conn) {
					defer close(closed)
					br := bufio.NewReader(c)
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					io.WriteString(c, tc.answer)
					// Record the rest until the proxy closes (it must).
					b, _ := io.ReadAll(br)
					mu.Lock()
					got.Write(b)
					mu.Unlock()
				})
				h.setEndpoints("apps", "app", true, addr)
				const smuggled = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
				var extra []byte
				if when == "pipelined" {
					extra = []byte(smuggled)
				}
				c, br, resp := rawUpgrade(t, h.addr, extra)
				defer c.Close()
				body, err := io.ReadAll(resp.Body)
				if resp.StatusCode != tc.status || string(body) != tc.wantBody || err != nil {
					t.Fatalf("got %d %q (%v); want %d %q", resp.StatusCode, body, err, tc.status, tc.wantBody)
				}
				if v := resp.Header.Values("X-Hop"); len(v) > 0 {
					t.Errorf("X-Hop relayed as %q; want it dropped as Connection-listed", v)
				}
				if when == "after" {
					io.WriteString(c, smuggled)
				}
				// The proxy closes the client connection...
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := br.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("after the answer: read %d, %v; want EOF", n, err)
				}
				// ...and the upstream one, which received nothing more.
				select {
				case <-closed:
				case <-time.After(5 * time.Second):
					t.Fatal("upstream connection not closed")
				}
				mu.Lock()
				defer mu.Unlock()
				if got.Len() != 0 {
					t.Errorf("upstream received %q after the request; want nothing", got.String())
				}
				c.Close() // ends the proxy's lingering read
				h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
			})
		}
	}
}

// Only HTTP/1.1 GET requests asking for "websocket" in Upgrade and
// "upgrade" in Connection (any case, in lists) are tunnelled; others are
// forwarded as plain requests, their Upgrade header stripped.
func TestUpgradeDetection(t *testing.T) {
	h := startHarness(t, oneService)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "websocket")
			w.WriteHeader(http.StatusSwitchingProtocols)
			return
		}
		io.WriteString(w, "plain")
	})
	h.setEndpoints("apps", "app", true, up.addr())
	for _, tc := range []struct {
		name, head string
		want       int
	}{
		{"websocket", "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", 101},
		{"case and lists", "GET / HTTP/1.1\r\nConnection: keep-alive, UPGRADE\r\nUpgrade: foo/2, WebSocket\r\n", 101},
		{"several lines", "GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: upgrade\r\nUpgrade: websocket\r\n", 101},
		{"h2c", "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n", 200},
		{"no connection token", "GET / HTTP/1.1\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n", 200},
		{"versioned token", "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket/13\r\n", 200},
		{"post", "POST / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n", 200},
		{"http/1.0", "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n", 200},
		{"with body", "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := strings.Replace(tc.head, "\r\n", "\r\nHost: app.test\r\n", 1)
			if !strings.Contains(raw, "\r\n\r\n") {
				raw += "\r\n"
			}
			out, _ := h.rawExchange(raw, 300*time.Millisecond)
			if got, _, _ := strings.Cut(out, "\r\n"); !strings.HasPrefix(got, "HTTP/1.1 "+strconv.Itoa(tc.want)+" ") {
				t.Errorf("got %q; want status %d", got, tc.want)
			}
		})
	}
}

// A refused connection is retried on the next endpoint, as for a plain
// request (issue 2); with none that accepts before the deadline, the
// client gets 503 with Retry-After and no tunnel.
func TestWebSocketRefusedEndpoint(t *testing.T) {
	closedAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return ln.Addr().String()
	}
	t.Run("retried", func(t *testing.T) {
		h := startHarness(t, oneService)
		up := wsUpstream(t, wsEcho)
		h.setEndpoints("apps", "app", true, closedAddr(), up.addr())
		for i := range 4 { // round robin: some start on the refused one
			c := h.dialWS(t, "/")
			if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
				t.Fatalf("tunnel %d: %v", i, err)
			}
			if _, _, err := c.ReadMessage(); err != nil {
				t.Fatalf("tunnel %d: %v", i, err)
			}
		}
	})
	t.Run("deadline", func(t *testing.T) {
		h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, `timeout = "200ms"`, 1))
		h.setEndpoints("apps", "app", true, closedAddr())
		c, _, resp := rawUpgrade(t, h.addr, nil)
		defer c.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("got %d Retry-After=%q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		c.Close()
		h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
		if got := h.metric(`agimo_open_tunnels{host="app.test"}`); got > 0 {
			t.Errorf("open tunnels = %v; want none", got)
		}
	})
}
