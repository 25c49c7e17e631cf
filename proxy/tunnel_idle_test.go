package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tunnel_idle_timeout closes a WebSocket that moves nothing for that
// long, while one kept busy stays open.
func TestTunnelIdleTimeout(t *testing.T) {
	cfg := strings.Replace(oneService, "service_port = 80", "service_port = 80\ntunnel_idle_timeout = \"400ms\"", 1)
	h := startHarness(t, cfg)
	up := wsUpstream(t, wsEcho)
	h.setEndpoints("apps", "app", true, up.addr())

	busy := h.dialWS(t, "/busy")
	idle := h.dialWS(t, "/idle")
	// Keep one busy for longer than the idle timeout.
	for i := 0; i < 8; i++ {
		if err := busy.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
			t.Fatalf("busy tunnel write %d: %v", i, err)
		}
		busy.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, msg, err := busy.ReadMessage(); err != nil || string(msg) != "ping" {
			t.Fatalf("busy tunnel echo %d: %q %v", i, msg, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The idle one has been closed by now: reading fails at once.
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, _, err := idle.ReadMessage(); err == nil {
		t.Fatal("idle tunnel still delivers messages; want it closed")
	} else if time.Since(start) > 2*time.Second {
		t.Errorf("idle tunnel not closed within the read deadline: %v", err)
	}
}
