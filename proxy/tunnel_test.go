package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/agimo/agimo/proxy"
)

// Lifecycle tests of issue 3's tunnels: half-close, shutdown, goroutines.

// A client's half-close reaches the upstream as EOF while the upstream can
// still send; the upstream's close then reaches the client.
func TestTunnelHalfClose(t *testing.T) {
	h := startHarness(t, oneService)
	upGot := make(chan string, 1)
	addr := listenRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, switchHead(req.Header.Get("Sec-WebSocket-Key")))
		b, _ := io.ReadAll(br) // returns at the client's FIN
		upGot <- string(b)
		io.WriteString(c, "still talking after your FIN")
		// listenRaw closes c when this returns.
	})
	h.setEndpoints("apps", "app", true, addr)

	c, br, resp := rawUpgrade(t, h.addr, nil)
	defer c.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("status %d; want 101", resp.StatusCode)
	}
	io.WriteString(c, "last words")
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-upGot:
		if got != "last words" {
			t.Errorf("upstream read %q then EOF; want %q", got, "last words")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream saw no EOF after the client's half-close")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(br)
	if string(rest) != "still talking after your FIN" || err != nil {
		t.Errorf("client read %q, %v; want the upstream's reply then EOF", rest, err)
	}
	h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// An upstream that dies mid-tunnel closes the client's connection too.
func TestTunnelUpstreamFailureClosesClient(t *testing.T) {
	h := startHarness(t, oneService)
	addr := listenRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, switchHead(req.Header.Get("Sec-WebSocket-Key")))
		br.ReadByte()
		c.(*net.TCPConn).SetLinger(0) // reset, not FIN
	})
	h.setEndpoints("apps", "app", true, addr)
	c, br, _ := rawUpgrade(t, h.addr, nil)
	defer c.Close()
	io.WriteString(c, "x")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("client read: %v; want the connection closed", err)
	}
	h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 0)
}

// Shutdown closes open tunnels, which fasthttp alone would leave open,
// and one still in its handshake, and logs how many it closed.
func TestTunnelsClosedAtShutdown(t *testing.T) {
	var logs syncBuffer
	h := startHarness(t, oneService, func(o *proxy.Options) {
		o.Log = zerolog.New(&logs).Level(zerolog.InfoLevel)
	})
	echo := wsUpstream(t, wsEcho)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" { // never answers the handshake
			<-r.Context().Done()
			return
		}
		echo.Config.Handler.ServeHTTP(w, r)
	})
	h.setEndpoints("apps", "app", true, up.addr())
	hanging, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hanging.Close()
	io.WriteString(hanging, "GET /hang HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	var conns []*websocket.Conn
	for range 3 {
		c := h.dialWS(t, "/")
		if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 3)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 4)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.proxy.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); err == nil || isTimeout(err) {
			t.Errorf("tunnel %d after shutdown: read %v; want closed", i, err)
		}
	}
	hanging.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(hanging); len(b) != 0 || err != nil {
		t.Errorf("tunnel in handshake after shutdown: read %q, %v; want closed without a word", b, err)
	}
	if !strings.Contains(logs.String(), `"tunnels":4`) {
		t.Errorf("shutdown log %q; want it to count 4 tunnels", logs.String())
	}
	// Shutdown returned after the tunnels ended: no waiting here.
	for _, name := range []string{`agimo_open_tunnels{host="app.test"}`, `agimo_active_requests{host="app.test"}`} {
		if got := h.metric(name); got != 0 {
			t.Errorf("%s after shutdown = %v; want 0", name, got)
		}
	}
}

// No goroutine outlives its tunnel.
func TestTunnelGoroutinesEnd(t *testing.T) {
	h := startHarness(t, oneService)
	up := wsUpstream(t, wsEcho)
	h.setEndpoints("apps", "app", true, up.addr())
	round := func() {
		var conns []*websocket.Conn
		for range 5 {
			c := h.dialWS(t, "/")
			if err := c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{7}, 100<<10)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.ReadMessage(); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 5)
		for _, c := range conns {
			c.Close()
		}
		h.waitMetric(`agimo_open_tunnels{host="app.test"}`, 0)
		h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	}
	// The first round warms up what is meant to stay: fasthttp's idle
	// workers, the upstream's listener.
	round()
	base := waitGoroutines(t, -1)
	round()
	waitGoroutines(t, base)
}

// waitGoroutines polls until at most want goroutines run (want < 0: until
// the count settles) and returns the count.
func waitGoroutines(t *testing.T, want int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	prev := -1
	for {
		n := runtime.NumGoroutine()
		if (want >= 0 && n <= want) || (want < 0 && n == prev) {
			return n
		}
		if time.Now().After(deadline) {
			if want < 0 {
				return n
			}
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines = %d; want at most %d\n%s", n, want, buf[:runtime.Stack(buf, true)])
		}
		prev = n
		time.Sleep(50 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errorsAs(err, &ne) && ne.Timeout()
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// wsUpstream is an HTTP server that upgrades every request with gorilla
// (small buffers, so messages fragment) and runs fn on the connection.
func wsUpstream(t testing.TB, fn func(*websocket.Conn)) *upstream {
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		fn(c)
	})
}

// wsEcho echoes every message, streamed frame by frame, until an error.
func wsEcho(c *websocket.Conn) {
	for {
		kind, r, err := c.NextReader()
		if err != nil {
			return
		}
		w, err := c.NextWriter(kind)
		if err != nil {
			return
		}
		if _, err := io.Copy(w, r); err != nil {
			return
		}
		if err := w.Close(); err != nil {
			return
		}
	}
}

// wsDialer dials app.test through the proxy.
func (h *harness) wsDialer() *websocket.Dialer {
	return &websocket.Dialer{
		NetDial:          func(string, string) (net.Conn, error) { return net.Dial("tcp", h.addr) },
		ReadBufferSize:   512,
		WriteBufferSize:  512,
		HandshakeTimeout: 5 * time.Second,
	}
}

func (h *harness) dialWS(t testing.TB, path string) *websocket.Conn {
	t.Helper()
	c, resp, err := h.wsDialer().Dial("ws://app.test"+path, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial websocket: %v (status %d)", err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawUpgrade writes a WebSocket handshake for app.test to addr, followed
// by extra in the same write, and reads the response head.
func rawUpgrade(t testing.TB, addr string, extra []byte) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	msg := "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" + string(extra)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read handshake response: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	return c, br, resp
}

// switchHead is a server's 101 for the client key (RFC 6455 §4.2.2).
func switchHead(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
}

// wsFrame encodes one final frame of up to 125 bytes (RFC 6455 §5.2),
// masked as a client must.
func wsFrame(op int, payload []byte, masked bool) []byte {
	b := []byte{0x80 | byte(op), byte(len(payload))}
	if !masked {
		return append(b, payload...)
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b[1] |= 0x80
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// readFrame reads one unmasked server frame of up to 125 bytes.
func readFrame(t testing.TB, c net.Conn, br *bufio.Reader) (int, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	p := make([]byte, hdr[1]&0x7f)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return int(hdr[0] & 0x0f), p
}

// listenRaw serves each connection to 127.0.0.1:0 with f, and on cleanup
// closes the listener and waits for every f to return.
func listenRaw(t testing.TB, f func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				f(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
