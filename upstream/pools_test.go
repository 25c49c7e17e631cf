package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/agimo/agimo/stats"
)

// TestIdleConnFresh drives IdleConn directly: a reused connection whose
// peer closed, or sent bytes nobody asked for, is swapped for a new one
// before the request's first byte; a live one is kept; a failed redial is
// not a refusal the handler would retry with a half-read body.
func TestIdleConnFresh(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(t *testing.T) (*IdleConn, net.Conn) {
		t.Helper()
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := NewIdleConn(nc, ln.Addr().String(), time.Second)
		t.Cleanup(func() { c.Close() })
		peer := <-accepted
		t.Cleanup(func() { peer.Close() })
		// One exchange, so the next write starts a new request.
		if _, err := c.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		peer.Write([]byte("a"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		return c, peer
	}
	// waitSent lets the peer's FIN or bytes reach c's socket.
	waitSent := func() { time.Sleep(20 * time.Millisecond) }

	for _, tc := range []struct {
		name    string
		peer    func(net.Conn)
		swapped bool
	}{
		{"alive", func(net.Conn) {}, false},
		{"closed", func(p net.Conn) { p.Close() }, true},
		{"unsolicited-bytes", func(p net.Conn) { p.Write([]byte("HTTP/1.1 200 OK\r\n")) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := dial(t)
			old := c.Conn
			tc.peer(peer)
			waitSent()
			if _, err := c.Write([]byte("q")); err != nil {
				t.Fatalf("write: %v", err)
			}
			if got := c.Conn != old; got != tc.swapped {
				t.Fatalf("connection swapped: got %v; want %v", got, tc.swapped)
			}
			if !tc.swapped {
				return
			}
			// The request went to the new connection, whole.
			np := <-accepted
			defer np.Close()
			np.SetReadDeadline(time.Now().Add(time.Second))
			b := make([]byte, 1)
			if _, err := io.ReadFull(np, b); err != nil || b[0] != 'q' {
				t.Fatalf("new upstream connection read %q, %v; want \"q\"", b, err)
			}
		})
	}

	t.Run("redial-refused", func(t *testing.T) {
		c, peer := dial(t)
		peer.Close()
		waitSent()
		ln.Close() // nothing listens: the redial is refused
		for range accepted {
		}
		_, err := c.Write([]byte("q"))
		if !errors.Is(err, errRedial) {
			t.Fatalf("got %v; want errRedial", err)
		}
		if IsRefused(err) || errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("got %v, which the handler would retry as a refused dial; want a plain failure", err)
		}
	})
}

// A failed redial of a pooled connection the upstream closed is a dial
// error, whatever the dial's own error: its kind is "dial", not
// "protocol" (an e2e run saw "connect: invalid argument" counted so).
func TestRedialErrorKind(t *testing.T) {
	err := fmt.Errorf("%w: redial %s: %v", errRedial, "10.0.0.1:80", syscall.EINVAL)
	if got := Kind(err); got != stats.UpstreamDial {
		t.Errorf("Kind(%v) = %q; want %q", err, got, stats.UpstreamDial)
	}
}
