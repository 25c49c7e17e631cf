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

// A connection detaches (parks without fasthttp's Hijack) only while its
// first request's head is all that was read from it: bytes after the head
// sit in fasthttp's buffer, and a later request may follow a response.
// Once detached, the socket and the slot are the new owner's: fasthttp's
// writes and close no longer reach them.
func TestDetach(t *testing.T) {
	const head = "GET / HTTP/1.1\r\nHost: x.test\r\n\r\n"
	for _, tc := range []struct {
		name     string
		sent     string
		answered bool // a response was written before
		want     bool
	}{
		{"first-head", head, false, true},
		{"empty-lines-first", "\r\n" + head, false, true},
		{"pipelined", head + "GET /2 HTTP/1.1\r\n", false, false},
		{"head-unfinished", "GET / HTTP/1.1\r\nHost: x.test\r\n", false, false},
		{"after-a-response", head, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := socketPair(t)
			lim := newConnLimit(1, 5)
			cc := newClientConn(server)
			cc.slot = lim.acquire()
			if tc.answered {
				cc.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
				io.ReadFull(client, make([]byte, 27))
			}
			io.WriteString(client, tc.sent)
			buf := make([]byte, 4096)
			for got := 0; got < len(tc.sent); {
				n, err := cc.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
			raw, slot := cc.detach()
			if got := raw != nil; got != tc.want {
				t.Fatalf("detached = %v; want %v", got, tc.want)
			}
			if !tc.want {
				if slot != nil {
					t.Errorf("slot given without the socket")
				}
				return
			}
			// fasthttp's side after the detach.
			if n, err := cc.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")); n != 19 || err != nil {
				t.Errorf("write after detach: %d, %v; want 19, nil", n, err)
			}
			if n, err := cc.Read(buf); n != 0 || err != io.EOF {
				t.Errorf("read after detach: %d, %v; want 0, EOF", n, err)
			}
			cc.SetReadDeadline(time.Unix(1, 0))
			cc.Close()
			if n := lim.open.Load(); n != 1 {
				t.Errorf("open = %d after fasthttp's close; want 1 until the new owner frees it", n)
			}
			// The new owner's socket is open, deadline-free, and unwritten to.
			io.WriteString(client, "ping")
			if n, err := raw.Read(buf); err != nil || string(buf[:n]) != "ping" {
				t.Errorf("new owner read %q, %v; want ping", buf[:n], err)
			}
			io.WriteString(raw, "pong")
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := client.Read(buf); err != nil || string(buf[:n]) != "pong" {
				t.Errorf("client read %q, %v; want pong (nothing of fasthttp's)", buf[:n], err)
			}
			raw.Close()
			slot.Release()
			if n := lim.open.Load(); n != 0 {
				t.Errorf("open = %d; want 0", n)
			}
		})
	}
}
