package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Memory per idle tunnel opened by a crowd: every client sends its
// handshake before the upstream answers any (a reconnect storm after a
// deploy; the bench's tunnel-capacity clients do the same), so every
// handshake is in flight at once. Unlike BenchmarkTunnelIdleMemory, which
// opens one tunnel at a time, this measures what a handshake holds while
// it waits. The "direct" figures are subtracted, as there.
//
//	go test -run '^$' -bench TunnelCrowdMemory -benchtime 1x ./proxy
func BenchmarkTunnelCrowdMemory(b *testing.B) {
	const n = 1000
	var (
		mu      sync.Mutex // guards arrived and release
		arrived int
		release = make(chan struct{})
	)
	upAddr := listenRaw(b, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		mu.Lock()
		if arrived++; arrived == n {
			close(release) // the whole crowd is waiting: answer
		}
		ch := release
		mu.Unlock()
		<-ch
		io.WriteString(c, switchHead(req.Header.Get("Sec-WebSocket-Key")))
		var one [1]byte
		c.Read(one[:]) // the tunnel stays open until its client leaves
	})
	measure := func(addr string) (heap, stack float64) {
		h0, s0 := inUse()
		mu.Lock()
		arrived, release = 0, make(chan struct{})
		mu.Unlock()
		cs := make([]net.Conn, n)
		for i := range cs {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			cs[i] = c
		}
		head := make([]byte, 4096) // the 101 fits one read
		for _, c := range cs {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(head); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond) // every tunnel reaches its wait
		h1, s1 := inUse()
		for _, c := range cs {
			c.Close()
		}
		time.Sleep(200 * time.Millisecond) // let the tunnels wind down
		return float64(h1-h0) / n, float64(s1-s0) / n
	}
	for range b.N {
		dHeap, dStack := measure(upAddr)
		h := startHarness(b, oneService)
		h.setEndpoints("apps", "app", true, upAddr)
		aHeap, aStack := measure(h.addr)
		b.ReportMetric(aHeap+aStack-dHeap-dStack, "B/tunnel")
		b.ReportMetric(aHeap-dHeap, "heapB/tunnel")
		b.ReportMetric(aStack-dStack, "stackB/tunnel")
	}
}
