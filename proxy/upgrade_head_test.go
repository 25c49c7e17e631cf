package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// The upstream's answer to an upgrade, read after waiting for it with no
// buffer (awaitAnswer): one that never comes is a 504 at upstream_timeout,
// none at all a 502, a 101 head is read whole up to the forward path's
// 16 KiB bound, and past it the upgrade fails with a 502; each failure
// answered as forward answers.
func TestUpgradeAnswerHead(t *testing.T) {
	pad := func(n int) string { return "X-Pad: " + strings.Repeat("p", n) + "\r\n" }
	for _, tc := range []struct {
		name   string
		answer func(c net.Conn, key string) // writes the upstream's answer
		status int
	}{
		{"never", func(c net.Conn, _ string) { io.Copy(io.Discard, c) }, 504},
		{"closed", func(net.Conn, string) {}, 502},
		{"byte-by-byte", func(c net.Conn, key string) {
			for _, b := range []byte(switchHead(key)) {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
			}
			io.Copy(c, c)
		}, 101},
		{"head-15KiB", func(c net.Conn, key string) {
			head := switchHead(key)
			io.WriteString(c, head[:len(head)-2]+pad(15<<10)+"\r\n")
			io.Copy(c, c)
		}, 101},
		{"head-over-16KiB", func(c net.Conn, key string) {
			head := switchHead(key)
			io.WriteString(c, head[:len(head)-2]+pad(17<<10)+"\r\n")
			io.Copy(io.Discard, c)
		}, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nupstream_timeout = \"300ms\"", 1)
			h := startHarness(t, cfg)
			addr := listenRaw(t, func(c net.Conn) {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				tc.answer(c, req.Header.Get("Sec-WebSocket-Key"))
			})
			h.setEndpoints("apps", "app", true, addr)
			c, br, resp := rawUpgrade(t, h.addr, nil)
			defer c.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d; want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 101 {
				// Agimo's own answer, as forward gives it: its request's ID,
				// plain text, the connection closed, nothing fasthttp would
				// add by default (Date, Server).
				if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
					!resp.Close || resp.Header.Get("Date") != "" || resp.Header.Get("Server") != "" {
					t.Errorf("answer head %v (close %v); want X-Request-Id, Content-Type text/plain; charset=utf-8, "+
						"Connection: close, no Date nor Server", resp.Header, resp.Close)
				}
				return
			}
			// The tunnel works: the upstream echoes.
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
				t.Fatalf("echo %q, %v; want ping", got, err)
			}
		})
	}
}
