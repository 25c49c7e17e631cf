package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTestRelay serves a relay to an in-process WebSocket echo upstream
// that records the head of each upgrade request it receives.
func startTestRelay(t *testing.T) (addr string, heads func() []http.Header) {
	t.Helper()
	var (
		mu  sync.Mutex
		got []http.Header
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		got = append(got, h)
		mu.Unlock()
		wsEcho(w, r)
	})
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: mux}
	go up.Serve(upLn)
	rlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &http.Server{Handler: &relay{routes: map[string]string{hostWeb: upLn.Addr().String()}}}
	go rl.Serve(rlLn)
	t.Cleanup(func() { rl.Close(); up.Close() })
	return rlLn.Addr().String(), func() []http.Header {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

// TestRelayForwardsUpgrade sends a handshake and a first frame in one
// write (the frame lands in the relay's buffer behind the head) and
// expects the 101, the echo, and the head a proxy forwards upstream.
func TestRelayForwardsUpgrade(t *testing.T) {
	addr, heads := startTestRelay(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	hs := "GET /ws?x=1 HTTP/1.1\r\nHost: " + hostWeb + "\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\n" +
		"X-Hop: drop me\r\nX_Underscore: dropped\r\nKeep-Alive: timeout=5\r\nX-Custom: kept\r\nX-Forwarded-For: 192.0.2.1\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	// A masked text frame "hello" (RFC 6455 §5.2), mask 1,2,3,4.
	mask := []byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | 5}
	frame = append(frame, mask...)
	for i, b := range []byte("hello") {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := c.Write(append([]byte(hs), frame...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got status %d; want 101", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-Websocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("got Sec-WebSocket-Accept %q; want the upstream's", got)
	}
	echo := make([]byte, 7)
	if _, err := io.ReadFull(br, echo); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x81, 5, 'h', 'e', 'l', 'l', 'o'}; !bytes.Equal(echo, want) {
		t.Errorf("got echo %q; want %q", echo, want)
	}
	hh := heads()
	if len(hh) != 1 {
		t.Fatalf("got %d upgrade requests upstream; want 1", len(hh))
	}
	h := hh[0]
	for _, tc := range []struct{ field, want string }{
		{"Host", hostWeb},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"X-Custom", "kept"},
		{"X-Hop", ""},
		{"Keep-Alive", ""},
		{"X_underscore", ""},
		{"X-Forwarded-For", "127.0.0.1"},
		{"X-Forwarded-Proto", "http"},
		{"X-Forwarded-Host", hostWeb},
		{"Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
	} {
		if got := strings.Join(h.Values(tc.field), ", "); got != tc.want {
			t.Errorf("upstream got %s %q; want %q", tc.field, got, tc.want)
		}
	}
}

func TestRelayRefusesPlainRequests(t *testing.T) {
	addr, _ := startTestRelay(t)
	for _, tc := range []struct {
		host string
		want int
	}{
		{hostWeb, http.StatusNotImplemented},
		{"other.bench", http.StatusNotFound},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/ws", nil)
		req.Host = tc.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: got status %d; want %d", tc.host, resp.StatusCode, tc.want)
		}
	}
}

// TestPlainCopyHidesFastPaths: io.Copy must not see ReadFrom or WriteTo,
// or it would splice between two TCP connections.
func TestPlainCopyHidesFastPaths(t *testing.T) {
	if _, ok := any(onlyWriter{}).(io.ReaderFrom); ok {
		t.Error("onlyWriter has ReadFrom")
	}
	if _, ok := any(onlyReader{}).(io.WriterTo); ok {
		t.Error("onlyReader has WriteTo")
	}
}

func TestParseRoutes(t *testing.T) {
	rt, err := parseRoutes([]string{"Web.Bench=127.0.0.1:1"})
	if err != nil || rt["web.bench"] != "127.0.0.1:1" {
		t.Errorf("got %v, %v; want web.bench routed", rt, err)
	}
	for _, bad := range [][]string{nil, {"nohost"}, {"=1.2.3.4:5"}, {"h="}} {
		if _, err := parseRoutes(bad); err == nil {
			t.Errorf("parseRoutes(%q) accepted", bad)
		}
	}
}

// TestUpgradeHeadersThroughRelay runs the suite's upgrade parity probe
// through the relay to the real web upstream handler.
func TestUpgradeHeadersThroughRelay(t *testing.T) {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: webMux()}
	go up.Serve(upLn)
	rlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &http.Server{Handler: &relay{routes: map[string]string{hostWeb: upLn.Addr().String()}}}
	go rl.Serve(rlLn)
	t.Cleanup(func() { rl.Close(); up.Close() })

	lines, err := upgradeHeaders(rlLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{"Host: web.bench", "Connection: Upgrade", "Upgrade: websocket", "X-Custom: kept",
		"X-Forwarded-For: 127.0.0.1", "X-Forwarded-Host: web.bench", "X-Forwarded-Proto: http"} {
		if !strings.Contains(got, want+"\n") && !strings.HasSuffix(got, want) {
			t.Errorf("upstream got:\n%s\nwant a line %q", got, want)
		}
	}
	for _, bad := range []string{"X_underscore", "192.0.2.1", "spoofed.example"} {
		if strings.Contains(got, bad) {
			t.Errorf("upstream got:\n%s\nwant no %q", got, bad)
		}
	}
	// Same path twice: parity holds, and nothing is noted without nginx.
	if note, err := checkUpgradeParity(rlLn.Addr().String(), rlLn.Addr().String(), ""); err != nil || note != "" {
		t.Errorf("got %q, %v; want parity", note, err)
	}
}

func TestLineDiff(t *testing.T) {
	if d := lineDiff([]string{"a: 1", "b: 2"}, []string{"b: 2", "a: 1"}); d != "" {
		t.Errorf("got %q; want no difference", d)
	}
	if d, want := lineDiff([]string{"a: 1", "c: 3"}, []string{"a: 1", "c: x"}), "agimo only: `c: 3`; nginx only: `c: x`"; d != want {
		t.Errorf("got %q; want %q", d, want)
	}
}
