package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// relay opens a tunnel between two fresh pairs and runs Relay in the
// background. It returns the outer ends (the client's and the upstream's
// own sockets) and Relay's result.
func relay(t *testing.T, reg *Registry, cPrefix, uPrefix []byte, o Options) (client, upstream *net.TCPConn, done <-chan error) {
	t.Helper()
	client, proxyClient := tcpPair(t)
	proxyUp, upstream := tcpPair(t)
	tn, err := reg.Open(proxyClient)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.SetUpstream(proxyUp); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() {
		err := tn.Relay(cPrefix, uPrefix, o)
		// End before reporting, so a test that has Relay's result can
		// count on the registry having let the tunnel go.
		tn.End()
		ch <- err
	}()
	return client, upstream, ch
}

// Buffered prefixes go first, bytes flow both ways, a half-close passes
// through each way, and the counters see every byte.
func TestTunnelRelayPrefixesHalfCloseAndCounts(t *testing.T) {
	var up, down atomic.Int64
	reg := NewRegistry()
	client, upstream, done := relay(t, reg, []byte("c-prefix;"), []byte("u-prefix;"), Options{
		Up:   func(n int64) { up.Add(n) },
		Down: func(n int64) { down.Add(n) },
	})
	big := bytes.Repeat([]byte("x"), 3<<20) // more than one chunk
	go func() {
		client.Write([]byte("hello;"))
		client.Write(big)
		client.CloseWrite()
	}()
	got, err := io.ReadAll(upstream) // ends at the client's half-close
	if want := "c-prefix;hello;" + string(big); string(got) != want || err != nil {
		t.Fatalf("upstream read %d bytes (%v); want %d", len(got), err, len(want))
	}
	// The upstream can still talk after the client's FIN.
	upstream.Write([]byte("reply"))
	upstream.CloseWrite()
	got, err = io.ReadAll(client)
	if string(got) != "u-prefix;reply" || err != nil {
		t.Fatalf("client read %q (%v); want %q", got, err, "u-prefix;reply")
	}
	if err := <-done; err != nil {
		t.Errorf("relay: %v; want nil after both sides closed in turn", err)
	}
	if u, d := up.Load(), down.Load(); u != int64(15+len(big)) || d != 14 {
		t.Errorf("counted up %d, down %d; want %d, 14", u, d, 15+len(big))
	}
	if n := reg.Len(); n != 0 {
		t.Errorf("registry holds %d tunnels after the end; want 0", n)
	}
}

// A reset on one side closes the other.
func TestTunnelRelayFailureClosesBoth(t *testing.T) {
	client, upstream, done := relay(t, NewRegistry(), nil, nil, Options{})
	upstream.SetLinger(0)
	upstream.Close() // RST
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client read %v; want closed", err)
	}
	if err := <-done; err == nil {
		t.Errorf("relay: nil; want the reset")
	}
}

// IdleTimeout closes a tunnel on which nothing moved, and only then: bytes
// one way only keep it open.
func TestTunnelIdleTimeout(t *testing.T) {
	const idle = 100 * time.Millisecond
	client, upstream, done := relay(t, NewRegistry(), nil, nil, Options{IdleTimeout: idle})
	go io.Copy(io.Discard, upstream)
	// Talk one way for 5 timeouts: the tunnel must stay.
	var last time.Time
	for range 25 {
		last = time.Now()
		if _, err := client.Write([]byte("tick")); err != nil {
			t.Fatalf("write while active: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("relay ended while bytes flowed: %v", err)
		case <-time.After(idle / 5):
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrIdle) {
			t.Errorf("relay: %v; want ErrIdle", err)
		}
		if el := time.Since(last); el < idle {
			t.Errorf("closed %v after the last byte; want at least %v", el, idle)
		}
	case <-time.After(20 * idle):
		t.Fatal("idle tunnel not closed")
	}
}

// Close closes every tunnel, those still in their handshake too, counts
// them, and refuses new ones; Wait returns once they have ended.
func TestTunnelRegistryClose(t *testing.T) {
	reg := NewRegistry()
	_, _, done := relay(t, reg, nil, nil, Options{})
	_, pc := tcpPair(t)
	handshaking, err := reg.Open(pc)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.Close(); n != 2 {
		t.Errorf("Close closed %d; want 2", n)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("relay: %v; want ErrClosed", err)
	}
	up, _ := tcpPair(t)
	if err := handshaking.SetUpstream(up); !errors.Is(err, ErrClosed) {
		t.Errorf("SetUpstream after Close: %v; want ErrClosed", err)
	}
	if err := handshaking.Context().Err(); err == nil {
		t.Errorf("context of a closed tunnel not done")
	}
	handshaking.End()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := reg.Wait(ctx); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if _, err := reg.Open(pc); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v; want ErrClosed", err)
	}
}

// TestRelaySmallReadsDoNotAllocate: the read/write path of a relay over
// TCP allocates nothing per message once warm (a closure or a buffer per
// read would show here).
func TestRelaySmallReadsDoNotAllocate(t *testing.T) {
	a, b := tcpPair(t)
	c, d := tcpPair(t)
	rd := newReader(b, nil)
	if rd.raw == nil {
		t.Fatal("got no raw reader over a *net.TCPConn; want one")
	}
	msg := []byte("0123456789abcdef")
	got := make([]byte, len(msg))
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := rd.relay(c); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(d, got); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %.1f allocations per relayed message; want 0", allocs)
	}
}
