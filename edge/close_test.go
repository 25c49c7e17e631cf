package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// waitUntil polls cond until it holds, failing the test after a while.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitReturns fails the test if fn does not return in a while.
func waitReturns(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
	}
}

// Close closes the connections being sorted, Wait returns once their
// goroutines have, and none is left.
func TestCloseMidSort(t *testing.T) {
	base := runtime.NumGoroutine()
	cert := newCA(t, "edge CA").leaf(t, "a.test")
	plain := newRig(t, rigOpts{timeout: time.Minute})
	tlsr := newRig(t, rigOpts{tls: true, cert: &cert, timeout: time.Minute})
	cases := []struct {
		r    *rig
		send string
	}{
		{plain, ""},
		{plain, preface[:20]},
		{tlsr, ""},
		{tlsr, "\x16\x03\x01\x01\x00\x01"}, // part of a ClientHello
	}
	var conns []net.Conn
	for _, c := range cases {
		conn, err := net.Dial("tcp", c.r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(conn, c.send)
		conns = append(conns, conn)
	}
	waitUntil(t, "every connection is being sorted", func() bool { return plain.sorting() == 2 && tlsr.sorting() == 2 })
	for _, r := range []*rig{plain, tlsr} {
		r.e.Close()
		waitReturns(t, "Wait", r.e.Wait)
	}
	for i, conn := range conns {
		if _, err := io.Copy(io.Discard, conn); err != nil && !isReset(err) {
			t.Errorf("connection %d: %v; want it closed", i, err)
		}
	}
	if got := plain.counter(`agimo_edge_unsorted_total{reason="shutdown"}`); got != 2 {
		t.Errorf("plain: unsorted{shutdown} = %d; want 2", got)
	}
	if got := tlsr.counter(`agimo_tls_handshake_errors_total{reason="shutdown"}`); got != 2 {
		t.Errorf("tls: handshake errors{shutdown} = %d; want 2", got)
	}
	plain.stop()
	tlsr.stop()
	for _, c := range conns {
		c.Close()
	}
	waitGoroutines(t, base)
}

// h2cClient returns a client speaking h2c with prior knowledge.
func h2cClient() (*http.Client, *http2.Transport) {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr}, tr
}

// The lead's graceful drain of HTTP/2: after Close, hs.Shutdown has
// x/net/http2 send GOAWAY on every connection it serves; a request in
// flight completes, then the server closes the connection itself, so
// Shutdown returns without closing anything.
func TestShutdownDrainsH2(t *testing.T) {
	base := runtime.NumGoroutine()
	r := newRig(t, rigOpts{})
	r.h2Gate = make(chan struct{})
	client, tr := h2cClient()
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	var got string
	var gerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := client.Get("http://" + r.addr + "/hold")
		if err != nil {
			gerr = err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got, gerr = string(b), err
	}()
	<-r.h2In
	r.e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.hs.Shutdown(ctx); err != nil {
		t.Fatalf("hs.Shutdown: %v", err)
	}
	shut := make(chan error, 1)
	go func() { shut <- r.e.Shutdown(ctx) }()
	close(r.h2Gate)
	wg.Wait()
	if want := "h2 proto=HTTP/2.0 tls=false host=" + r.addr + " path=/hold body="; gerr != nil || got != want {
		t.Errorf("request in flight: got %q, %v; want %q", got, gerr, want)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v; want the connection closed by its server after GOAWAY", err)
	}
	tr.CloseIdleConnections()
	r.stop()
	waitGoroutines(t, base)
}

// Shutdown closes, at ctx's end, the connections whose server still
// holds them.
func TestShutdownForcesH2(t *testing.T) {
	base := runtime.NumGoroutine()
	r := newRig(t, rigOpts{})
	client, tr := h2cClient()
	defer tr.CloseIdleConnections()
	if got := body(t, client, "http://"+r.addr+"/idle"); got == "" {
		t.Fatal("no answer")
	}
	// The client keeps its connection, and nobody sends GOAWAY.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v; want %v", err, context.DeadlineExceeded)
	}
	waitReturns(t, "Wait", r.e.Wait)
	tr.CloseIdleConnections()
	r.stop()
	waitGoroutines(t, base)
}
