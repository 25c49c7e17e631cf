package proxy_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Streaming tests of issue 3: responses reach the client as they arrive,
// with bounded memory, whatever their framing.

// Each Server-Sent Event reaches the client before the upstream sends the
// next, and the stream counts as an active request for its whole life.
func TestSSEEachEventArrivesAlone(t *testing.T) {
	for _, framing := range []string{"chunked", "close-delimited"} {
		t.Run(framing, func(t *testing.T) {
			h := startHarness(t, oneService)
			second := make(chan struct{})
			var addr string
			if framing == "chunked" {
				up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/event-stream")
					io.WriteString(w, "data: one\n\n")
					w.(http.Flusher).Flush()
					select {
					case <-second:
					case <-r.Context().Done():
						return
					}
					io.WriteString(w, "data: two\n\n")
				})
				addr = up.addr()
			} else {
				// No Content-Length, no chunking: the body ends when the
				// upstream closes (RFC 9112 §6.3, rule 8).
				addr = listenRaw(t, func(c net.Conn) {
					if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: one\n\n")
					select {
					case <-second:
					case <-time.After(10 * time.Second):
						return
					}
					io.WriteString(c, "data: two\n\n")
				})
			}
			h.setEndpoints("apps", "app", true, addr)

			req, _ := http.NewRequest("GET", "http://"+h.addr+"/events", nil)
			req.Host = "app.test"
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			events := make(chan string)
			go func() {
				defer close(events)
				br := bufio.NewReader(resp.Body)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line != "\n" {
						events <- line
					}
				}
			}()
			next := func() string {
				select {
				case ev := <-events:
					return ev
				case <-time.After(5 * time.Second):
					return "(nothing within 5s)"
				}
			}
			// The upstream holds the second event until the first arrived.
			if got := next(); got != "data: one\n" {
				t.Fatalf("first event %q; want %q", got, "data: one\n")
			}
			if got := h.metric(`agimo_active_requests{host="app.test"}`); got != 1 {
				t.Errorf("active requests during the stream = %v; want 1", got)
			}
			close(second)
			if got := next(); got != "data: two\n" {
				t.Fatalf("second event %q; want %q", got, "data: two\n")
			}
			if _, ok := <-events; ok {
				t.Errorf("more after the last event; want the end of the body")
			}
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
		})
	}
}

// A large download streams through with bounded memory, byte-exact,
// whether its length is declared, chunked or close-delimited.
func TestStreamingLargeDownloadBoundedMemory(t *testing.T) {
	for _, tc := range []struct {
		framing string
		size    int64
	}{
		{"content-length", 256 << 20},
		{"chunked", 64 << 20},
		{"close-delimited", 64 << 20},
	} {
		t.Run(tc.framing, func(t *testing.T) {
			h := startHarness(t, oneService)
			var addr string
			switch tc.framing {
			case "close-delimited":
				addr = listenRaw(t, func(c net.Conn) {
					if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
					writePattern(c, tc.size)
				})
			default:
				up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
					if tc.framing == "content-length" {
						w.Header().Set("Content-Length", strconv.FormatInt(tc.size, 10))
					}
					writePattern(w, tc.size)
				})
				addr = up.addr()
			}
			h.setEndpoints("apps", "app", true, addr)

			peak := sampleHeap(t)
			req, _ := http.NewRequest("GET", "http://"+h.addr+"/big", nil)
			req.Host = "app.test"
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got := sha256.New()
			n, err := io.Copy(got, resp.Body)
			resp.Body.Close()
			grew := peak()
			want := sha256.New()
			writePattern(want, tc.size)
			if err != nil || n != tc.size || string(got.Sum(nil)) != string(want.Sum(nil)) {
				t.Fatalf("got %d bytes (%v), hash equal %v; want %d bytes, same hash", n, err, string(got.Sum(nil)) == string(want.Sum(nil)), tc.size)
			}
			// The whole process (client, proxy, upstream) shares the heap: a
			// body held in memory anywhere would show as hundreds of MiB.
			t.Logf("heap in use grew by %.1f MiB at most", float64(grew)/(1<<20))
			if limit := uint64(32 << 20); grew > limit {
				t.Errorf("heap in use grew by %d MiB during a %d MiB download; want under %d MiB", grew>>20, tc.size>>20, limit>>20)
			}
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
		})
	}
}

// writePattern writes size bytes of 64 KiB blocks, each starting with its
// index, so that a lost, repeated or reordered block changes the hash.
func writePattern(w io.Writer, size int64) {
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = byte(i * 7)
	}
	for i := int64(0); size > 0; i++ {
		binary.BigEndian.PutUint64(block, uint64(i))
		n := min(size, int64(len(block)))
		if _, err := w.Write(block[:n]); err != nil {
			return
		}
		size -= n
	}
}

// sampleHeap records HeapInuse every 10ms from now on; the function it
// returns stops sampling and reports the peak growth over the start.
func sampleHeap(t *testing.T) func() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	}()
	return func() uint64 {
		close(stop)
		wg.Wait()
		if peak < base {
			return 0
		}
		return peak - base
	}
}
