package proxy_test

import (
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkParkedMemory reports the Go heap and stack held per parked
// request (issue 5's budget is 8 KiB, RSS included). It parks n raw
// keep-alive GETs on a cold service and compares runtime memory before
// and after.
//
//	go test -run '^$' -bench ParkedMemory -benchtime 1x ./proxy
func BenchmarkParkedMemory(b *testing.B) {
	const n = 2000
	h := startHarness(b, strings.Replace(oneService, `timeout = "2s"`, `timeout = "120s"`, 1))
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				b.Fatal(err)
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			conns = append(conns, c)
		}
		h.waitMetric(`agimo_parked_requests{host="app.test"}`, n)
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapInuse-before.HeapInuse) / n
		stack := float64(after.StackInuse-before.StackInuse) / n
		b.ReportMetric(heap/1024, "heap-KiB/parked")
		b.ReportMetric(stack/1024, "stack-KiB/parked")
		b.ReportMetric((heap+stack)/1024, "KiB/parked")
		for _, c := range conns {
			c.Close()
		}
		h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
	}
}
