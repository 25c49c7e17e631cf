package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
)

// socketPair returns both ends of a loopback TCP connection.
func socketPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// A hand-off's undo runs when the connection closes without its Hijack
// callback having taken it over, and never once takeOver has; the slot
// goes with the socket to its new owner, and frees once (issue 10).
func TestHandOffUndoAndSlot(t *testing.T) {
	for _, tc := range []struct {
		name      string
		takenOver bool
		wantUndo  int
	}{
		{"callback-never-ran", false, 1},
		{"taken-over", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, _ := socketPair(t)
			lim := newConnLimit(1, 5)
			cc := newClientConn(server)
			cc.slot = lim.acquire()
			if s := lim.acquire(); s != nil {
				t.Fatal("second slot under max_connections = 1; want none")
			}
			undone := 0
			cc.setUndo(func() { undone++ })
			if tc.takenOver {
				raw, _, slot := takeOver(cc)
				if _, ok := raw.(*net.TCPConn); !ok {
					t.Fatalf("takeOver returned %T; want *net.TCPConn", raw)
				}
				if lim.open.Load() != 1 {
					t.Errorf("open = %d after takeOver; want 1 until the socket closes", lim.open.Load())
				}
				raw.Close()
				slot.Release()
				slot.Release()
			} else {
				cc.Close()
			}
			if undone != tc.wantUndo {
				t.Errorf("undo ran %d times; want %d", undone, tc.wantUndo)
			}
			if n := lim.open.Load(); n != 0 {
				t.Errorf("open = %d; want 0", n)
			}
		})
	}
}

// A replayed request that fasthttp closes without handing it to the
// handler ends its active count, and its client gets 503 with Retry-After
// unless fasthttp has answered it.
func TestReplayNeverHandled(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answered bool
	}{
		{"unanswered", false},
		{"answered-by-fasthttp", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := socketPair(t)
			set := metrics.NewSet()
			r := &route.Route{M: stats.NewHost(set, "x.test")}
			r.M.Active.Inc()
			rc := &replayConn{clientConn: newClientConn(server), route: r, pending: true, retryAfter: 7}
			if tc.answered {
				io.WriteString(rc, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}
			closed := make(chan struct{})
			go func() { rc.Close(); close(closed) }() // lingers until the client closes
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(client)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, wantRA := 503, "7"
			if tc.answered {
				want, wantRA = 400, ""
			}
			if resp.StatusCode != want || resp.Header.Get("Retry-After") != wantRA {
				t.Errorf("got %d Retry-After=%q; want %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"), want, wantRA)
			}
			io.Copy(io.Discard, resp.Body)
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after the answer: %v; want EOF", err)
			}
			client.Close()
			<-closed
			if n := r.M.Active.Get(); n != 0 {
				t.Errorf("active = %v; want 0", n)
			}
		})
	}
}
