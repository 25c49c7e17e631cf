package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Benchmarks of issue 3, each run side by side with its baselines in one
// process: "direct" (no proxy), "agimo" (a real Proxy from startHarness)
// and "tcprelay" (a bare TCP relay, io.Copy both ways: the floor any
// proxy pays for the extra hop).
//
//	go test -run '^$' -bench 'WS|Tunnel' -timeout 600s ./proxy
//
// Keep -benchtime a duration (the default 1s): an iteration of
// BenchmarkTunnelThroughput moves 1 GiB, and one of
// BenchmarkTunnelIdleMemory opens 2,000 connections.

var benchModes = []string{"direct", "agimo", "tcprelay"}

// benchTarget returns the address to dial for mode, in front of the
// upstream at upAddr.
func benchTarget(b *testing.B, mode, upAddr string) string {
	switch mode {
	case "agimo":
		h := startHarness(b, oneService)
		h.setEndpoints("apps", "app", true, upAddr)
		return h.addr
	case "tcprelay":
		return tcpRelay(b, upAddr)
	}
	return upAddr
}

// WebSocket echo round trips of a 32-byte message on one connection.
func BenchmarkWSEcho(b *testing.B) {
	up := wsUpstream(b, wsEcho)
	msg := []byte("0123456789abcdef0123456789abcdef")
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			addr := benchTarget(b, mode, up.addr())
			d := websocket.Dialer{NetDial: func(string, string) (net.Conn, error) { return net.Dial("tcp", addr) }}
			c, _, err := d.Dial("ws://app.test/", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ResetTimer()
			for range b.N {
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.ReadMessage(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "roundtrips/s")
		})
	}
}

// 1 GiB through an upgraded connection, client to upstream ("up") and
// upstream to client ("down").
func BenchmarkTunnelThroughput(b *testing.B) {
	const size = 1 << 30
	for _, dir := range []string{"up", "down"} {
		up := switchingUpstream(b, func(c net.Conn, br *bufio.Reader) {
			if dir == "up" {
				io.Copy(io.Discard, br)
				c.Write([]byte{1}) // all read
			} else {
				io.CopyN(c, zeros{}, size)
			}
		})
		for _, mode := range benchModes {
			b.Run(mode+"/"+dir, func(b *testing.B) {
				addr := benchTarget(b, mode, up)
				b.SetBytes(size)
				for range b.N {
					c, br, resp := rawUpgrade(b, addr, nil)
					if resp.StatusCode != 101 {
						b.Fatalf("status %d; want 101", resp.StatusCode)
					}
					if dir == "up" {
						io.CopyN(c, zeros{}, size)
						c.(*net.TCPConn).CloseWrite()
						if _, err := br.ReadByte(); err != nil {
							b.Fatal(err)
						}
					} else if n, err := io.Copy(io.Discard, br); n != size {
						b.Fatalf("read %d bytes (%v); want %d", n, err, size)
					}
					c.Close()
				}
			})
		}
	}
}

// Memory and file descriptors per idle open tunnel: N tunnels opened and
// left idle; the "direct" figures (the same clients and upstream, no
// proxy) are subtracted, leaving the proxy's own share.
func BenchmarkTunnelIdleMemory(b *testing.B) {
	const n = 1000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var held sync.WaitGroup
	var upConns []net.Conn
	held.Add(1)
	go func() {
		// Answer each upgrade, then hold the connection with no goroutine
		// of its own, so that the upstream costs little.
		defer held.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				c.Close()
				continue
			}
			io.WriteString(c, switchHead(req.Header.Get("Sec-WebSocket-Key")))
			upConns = append(upConns, c)
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		held.Wait()
		for _, c := range upConns {
			c.Close()
		}
	})
	measure := func(addr string) (heap, stack, fds float64) {
		open := func(k int) []net.Conn {
			cs := make([]net.Conn, k)
			for i := range cs {
				c, _, resp := rawUpgrade(b, addr, nil)
				if resp.StatusCode != 101 {
					b.Fatalf("status %d; want 101", resp.StatusCode)
				}
				cs[i] = c
			}
			return cs
		}
		closeAll := func(cs []net.Conn) {
			for _, c := range cs {
				c.Close()
			}
			time.Sleep(200 * time.Millisecond) // let the tunnels wind down
		}
		closeAll(open(50)) // warm up pools and workers
		h0, s0 := inUse()
		f0 := openFDs()
		cs := open(n)
		time.Sleep(100 * time.Millisecond) // every tunnel reaches its splice
		h1, s1 := inUse()
		f1 := openFDs()
		closeAll(cs)
		return float64(h1-h0) / n, float64(s1-s0) / n, float64(f1-f0) / n
	}
	for range b.N {
		dHeap, dStack, dFDs := measure(ln.Addr().String())
		h := startHarness(b, oneService)
		h.setEndpoints("apps", "app", true, ln.Addr().String())
		aHeap, aStack, aFDs := measure(h.addr)
		b.ReportMetric(aHeap+aStack-dHeap-dStack, "B/tunnel")
		b.ReportMetric(aHeap-dHeap, "heapB/tunnel")
		b.ReportMetric(aStack-dStack, "stackB/tunnel")
		b.ReportMetric(aFDs-dFDs, "fds/tunnel")
	}
}

// inUse is the heap and the stack memory in use after a GC.
func inUse() (heap, stack int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse), int64(ms.StackInuse)
}

func openFDs() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

// switchingUpstream answers every request with a 101 and hands the
// connection to f. It returns the upstream's address.
func switchingUpstream(b *testing.B, f func(net.Conn, *bufio.Reader)) string {
	return listenRaw(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, switchHead(req.Header.Get("Sec-WebSocket-Key")))
		f(c, br)
	})
}

// tcpRelay is a bare TCP relay to upAddr: io.Copy both ways, which splices
// on Linux, half-closing as each side finishes.
func tcpRelay(b *testing.B, upAddr string) string {
	return listenRaw(b, func(c net.Conn) {
		u, err := net.Dial("tcp", upAddr)
		if err != nil {
			return
		}
		defer u.Close()
		done := make(chan struct{})
		go func() {
			io.Copy(u, c)
			u.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(c, u)
		c.(*net.TCPConn).CloseWrite()
		<-done
	})
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
