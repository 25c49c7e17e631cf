package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The soak benchmark of issue 6 ("Shutdown and soak"), not run in CI:
//
//	AGIMO_SOAK=1h go test -run TestSoak -timeout 2h -v ./proxy
//
// It drives the proxy with mixed keep-alive HTTP, WebSocket sessions and
// park/release cycles for AGIMO_SOAK, sampling RSS, Go heap and goroutines
// every AGIMO_SOAK_EVERY (default 10s), and fails if they grow: the median
// of the last quarter of samples against that of the second (the first is
// warm-up). Every request must get the answer it wants.
const (
	soakRate      = 150 // HTTP requests per second, all kinds
	soakWebSocket = 20  // WebSocket sessions open at any time
	soakFlip      = 2500 * time.Millisecond
	// Bounds on growth from the second quarter to the last.
	soakRSSGrowth  = 0.20
	soakHeapGrowth = 0.20
	soakHeapSlack  = 2 << 20 // a small heap's jitter
	soakGoroutines = 50
)

// hot.test stays ready; flip.test turns ready and cold every soakFlip, so
// that a quarter of the requests park and are released, in the lot
// (bodiless) and in the goroutine park (with a body). Its timeout is far
// longer than a cold phase: no request should time out.
const soakConfig = `
timeout = "10s"
[[services]]
host = "hot.test"
type = "deployment"
namespace = "apps"
name = "hot"
service_name = "hot"
service_port = 80
[[services]]
host = "flip.test"
type = "deployment"
namespace = "apps"
name = "flip"
service_name = "flip"
service_port = 80
`

type soakSample struct {
	at         time.Duration
	rss, heap  uint64
	goroutines int
	requests   int64 // answered as wanted
	left       int64 // clients that gave up on purpose while parked
	sessions   int64 // WebSocket sessions completed
	messages   int64
	released   float64 // requests released from parking, from the histogram
	errs       int64
}

// soakStats counts outcomes across the load's goroutines.
type soakStats struct {
	requests, left, sessions, messages, errs atomic.Int64

	mu    sync.Mutex // guards kinds and first
	kinds map[string]int
	first []string
}

func (s *soakStats) fail(kind string, err error) {
	s.errs.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kinds[kind]++
	if len(s.first) < 20 {
		s.first = append(s.first, fmt.Sprintf("%s %s: %v", time.Now().Format(time.TimeOnly), kind, err))
	}
}

func TestSoak(t *testing.T) {
	total, err := time.ParseDuration(os.Getenv("AGIMO_SOAK"))
	if err != nil || total <= 0 {
		t.Skip("soak benchmark: set AGIMO_SOAK=1h (and -timeout 2h) to run it")
	}
	every := 10 * time.Second
	if v := os.Getenv("AGIMO_SOAK_EVERY"); v != "" {
		if every, err = time.ParseDuration(v); err != nil {
			t.Fatalf("AGIMO_SOAK_EVERY: %v", err)
		}
	}

	if os.Getenv("AGIMO_SOAK_PROFILES") != "" {
		runtime.MemProfileRate = 4096 // fine enough to see a slow leak
	}
	h := startHarness(t, soakConfig)
	upgrader := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			wsEcho(c)
		case "/echo":
			// Read all before writing: net/http may close the request
			// body once the response has started (ResponseWriter docs).
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Write(b)
		default:
			io.WriteString(w, "ok "+r.URL.RawQuery)
		}
	})
	h.setEndpoints("apps", "hot", true, up.addr())
	h.setEndpoints("apps", "flip", true, up.addr())

	st := &soakStats{kinds: map[string]int{}}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	stop := make(chan struct{})
	var load sync.WaitGroup

	// One HTTP request of the mix; i picks its kind.
	request := func(i int) {
		host, method, body := "hot.test", "GET", ""
		var giveUp time.Duration
		switch k := i % 20; {
		case k < 12: // keep-alive GET, ready
		case k < 14:
			method, body = "POST", strings.Repeat(strconv.Itoa(i%10), 1+i%4096)
		case k < 18:
			host = "flip.test"
		case k < 19:
			host, method, body = "flip.test", "POST", strings.Repeat("b", 1+i%1024)
		default: // a client that leaves if it is kept waiting
			host, giveUp = "flip.test", 300*time.Millisecond
		}
		path, want := "/get?"+strconv.Itoa(i), "ok "+strconv.Itoa(i)
		if method == "POST" {
			path, want = "/echo", body
		}
		ctx := context.Background()
		if giveUp > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, giveUp)
			defer cancel()
		}
		var rb io.Reader
		if body != "" {
			rb = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+h.addr+path, rb)
		req.Host = host
		resp, err := hc.Do(req)
		var got []byte
		if err == nil {
			got, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		kind := host + " " + method
		switch {
		case giveUp > 0 && errors.Is(err, context.DeadlineExceeded):
			st.left.Add(1)
		case err != nil:
			st.fail(kind, err)
		case resp.StatusCode != 200 || string(got) != want:
			st.fail(kind, fmt.Errorf("got %d with %d bytes %q; want 200 with %d bytes", resp.StatusCode, len(got), clip(string(got), 60), len(want)))
		default:
			st.requests.Add(1)
		}
	}
	load.Add(1)
	go func() {
		defer load.Done()
		tick := time.NewTicker(time.Second / soakRate)
		defer tick.Stop()
		// Bounds what a stall can pile up: past it, a request is an error.
		outstanding := make(chan struct{}, 1000)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			select {
			case outstanding <- struct{}{}:
			default:
				st.fail("overload", errors.New("1000 requests outstanding"))
				continue
			}
			load.Add(1)
			go func() {
				defer load.Done()
				defer func() { <-outstanding }()
				request(i)
			}()
		}
	}()

	// WebSocket sessions: each lives 1–10 s, a quarter of them through
	// flip.test (parked if it is cold), and echoes 1–50 messages.
	dialer := h.wsDialer()
	dialer.HandshakeTimeout = 30 * time.Second
	session := func(rng *rand.Rand) {
		host := "hot.test"
		if rng.IntN(4) == 0 {
			host = "flip.test"
		}
		c, _, err := dialer.Dial("ws://"+host+"/ws", nil)
		if err != nil {
			st.fail("ws dial "+host, err)
			return
		}
		defer c.Close()
		n := 1 + rng.IntN(50)
		gap := time.Duration(1+rng.IntN(10)) * time.Second / time.Duration(n)
		for range n {
			msg := bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, 1+rng.IntN(4096))
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				st.fail("ws write "+host, err)
				return
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, got, err := c.ReadMessage()
			if err != nil || !bytes.Equal(got, msg) {
				st.fail("ws echo "+host, fmt.Errorf("read %d bytes, %v; want %d bytes", len(got), err, len(msg)))
				return
			}
			st.messages.Add(1)
			select {
			case <-stop:
				return
			case <-time.After(gap):
			}
		}
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		st.sessions.Add(1)
	}
	for w := range soakWebSocket {
		load.Add(1)
		go func() {
			defer load.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 6))
			for {
				select {
				case <-stop:
					return
				default:
				}
				session(rng)
			}
		}()
	}

	// Readiness flips; samples are taken at the end of a ready phase, so
	// that each finds the same state: nothing parked, 20 tunnels open.
	var samples []soakSample
	start := time.Now()
	sample := func() {
		runtime.GC() // the live heap, not wherever the GC cycle stands
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := soakSample{
			at: time.Since(start).Round(time.Second), rss: readRSS(t), heap: ms.HeapInuse,
			goroutines: runtime.NumGoroutine(),
			requests:   st.requests.Load(), left: st.left.Load(),
			sessions: st.sessions.Load(), messages: st.messages.Load(),
			released: h.metric(`agimo_park_duration_seconds_count{host="flip.test"}`),
			errs:     st.errs.Load(),
		}
		samples = append(samples, s)
		t.Logf("sample %3d %s", len(samples), s)
		if dir := os.Getenv("AGIMO_SOAK_PROFILES"); dir != "" && len(samples)%30 == 0 {
			// A heap profile every 30 samples, to diff with go tool pprof
			// -base when the heap grows.
			writeHeapProfile(t, filepath.Join(dir, fmt.Sprintf("heap-%03d.pprof", len(samples))))
		}
	}
	end := time.After(total)
	last := start
	ready := true
flips:
	for {
		select {
		case <-end:
			break flips
		case <-time.After(soakFlip):
		}
		if ready && time.Since(last) >= every-soakFlip/2 {
			sample()
			last = time.Now()
		}
		ready = !ready
		h.setEndpoints("apps", "flip", ready, up.addr())
	}
	h.setEndpoints("apps", "flip", true, up.addr()) // release what is parked
	close(stop)
	load.Wait()
	tr.CloseIdleConnections()
	for _, host := range []string{"hot.test", "flip.test"} {
		h.waitMetric(`agimo_parked_requests{host="`+host+`"}`, 0)
		h.waitMetric(`agimo_open_tunnels{host="`+host+`"}`, 0)
		h.waitMetric(`agimo_active_requests{host="`+host+`"}`, 0)
	}
	sample()

	var b strings.Builder
	fmt.Fprintf(&b, "%d samples over %v (every ~%v, at the end of a ready phase)\n", len(samples), total, every)
	fmt.Fprintf(&b, "%8s %9s %9s %6s %9s %6s %8s %9s %8s %5s\n", "elapsed", "RSS MiB", "heap MiB", "gorout", "requests", "left", "sessions", "messages", "released", "errs")
	for _, s := range samples {
		fmt.Fprintf(&b, "%8s %9.1f %9.1f %6d %9d %6d %8d %9d %8.0f %5d\n", s.at, mib(s.rss), mib(s.heap), s.goroutines, s.requests, s.left, s.sessions, s.messages, s.released, s.errs)
	}
	last1 := samples[len(samples)-1]
	fmt.Fprintf(&b, "total: %d requests (%.0f/s), %d left on purpose, %d WebSocket sessions, %d messages, %.0f released from parking, %d errors\n",
		last1.requests, float64(last1.requests)/total.Seconds(), last1.left, last1.sessions, last1.messages, last1.released, last1.errs)
	t.Log(b.String())

	if n := st.errs.Load(); n > 0 {
		t.Errorf("%d requests or sessions failed, by kind %v; first ones:\n%s", n, st.kinds, strings.Join(st.first, "\n"))
	}
	if last1.released == 0 || last1.sessions == 0 {
		t.Errorf("released %v, sessions %d; want both above 0: the mix did not run", last1.released, last1.sessions)
	}
	// The final sample, taken after the load stopped, is not one of them.
	steady := samples[:len(samples)-1]
	if len(steady) < 8 {
		t.Fatalf("%d samples; want at least 8 to compare quarters (longer AGIMO_SOAK or shorter AGIMO_SOAK_EVERY)", len(steady))
	}
	q := len(steady) / 4
	second, lastQ := steady[q:2*q], steady[len(steady)-q:]
	med := func(qs []soakSample, f func(soakSample) float64) float64 {
		v := make([]float64, len(qs))
		for i, s := range qs {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rss := func(s soakSample) float64 { return float64(s.rss) }
	heap := func(s soakSample) float64 { return float64(s.heap) }
	gs := func(s soakSample) float64 { return float64(s.goroutines) }
	t.Logf("medians, second quarter → last: RSS %.1f → %.1f MiB, heap %.1f → %.1f MiB, goroutines %.0f → %.0f",
		mib(uint64(med(second, rss))), mib(uint64(med(lastQ, rss))), mib(uint64(med(second, heap))), mib(uint64(med(lastQ, heap))), med(second, gs), med(lastQ, gs))
	if got, base := med(lastQ, rss), med(second, rss); got > base*(1+soakRSSGrowth) {
		t.Errorf("RSS median %.1f MiB in the last quarter; want at most %.1f MiB (+%.0f%% of %.1f)", mib(uint64(got)), mib(uint64(base*(1+soakRSSGrowth))), 100*soakRSSGrowth, mib(uint64(base)))
	}
	if got, base := med(lastQ, heap), med(second, heap); got > max(base*(1+soakHeapGrowth), base+soakHeapSlack) {
		t.Errorf("heap median %.1f MiB in the last quarter; want at most +%.0f%% (or +%d MiB) of %.1f MiB", mib(uint64(got)), 100*soakHeapGrowth, soakHeapSlack>>20, mib(uint64(base)))
	}
	if got, base := med(lastQ, gs), med(second, gs); got > base+soakGoroutines {
		t.Errorf("goroutine median %.0f in the last quarter; want at most %.0f (+%d)", got, base+soakGoroutines, soakGoroutines)
	}
}

func (s soakSample) String() string {
	return fmt.Sprintf("at %v: RSS %.1f MiB, heap %.1f MiB, %d goroutines, %d requests, %d left, %d sessions, %d messages, %.0f released, %d errors",
		s.at, mib(s.rss), mib(s.heap), s.goroutines, s.requests, s.left, s.sessions, s.messages, s.released, s.errs)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// readRSS returns the process's resident set size (VmRSS).
func readRSS(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatalf("RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("RSS: %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("RSS: no VmRSS in /proc/self/status")
	return 0
}

func writeHeapProfile(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("heap profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Errorf("heap profile: %v", err)
	}
}
