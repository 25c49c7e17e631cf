package h2_test

import (
	"bytes"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/agimo/agimo/stats"
)

// rawConn is a client connection to the front end driven frame by frame,
// for what no well-behaved client sends.
type rawConn struct {
	net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawConn{Conn: c, fr: http2.NewFramer(c, c)}
	rc.enc = hpack.NewEncoder(&rc.buf)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return rc
}

// block returns the HPACK encoding of fields (name, value pairs).
func (rc *rawConn) block(fields ...string) []byte {
	rc.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = rc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(rc.buf.Bytes())
}

// goAway reads frames until the server's GOAWAY, and returns it, or nil
// if the connection ended without one.
func (rc *rawConn) goAway(t *testing.T) *http2.GoAwayFrame {
	t.Helper()
	_ = rc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no GOAWAY and no close: %v", err)
			}
			return nil
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			return ga
		}
	}
}

// Rapid reset (CVE-2023-44487): a client that opens streams and resets
// them at once, faster than their handlers end, gets the connection
// closed with ENHANCE_YOUR_CALM once more than 4×MaxConcurrentStreams
// handlers wait to start, and agimo_h2_protocol_errors_total counts it.
// The handlers here are held by an upstream that has not answered yet
// (a reset does not stop an HTTP/1.1 exchange already sent).
func TestRapidResetBounded(t *testing.T) {
	h := startHarness(t, oneService)
	release := make(chan struct{})
	var held sync.WaitGroup
	up := newH1UpstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		defer held.Done()
		<-release
	})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	h.setEndpoints("apps", "app", "", true, up.addr())
	h.waitReady("app.test")

	rc := dialRaw(t, h.addr)
	const pairs = 2000 // > 250 running + 1000 queued
	wrote := make(chan int, 1)
	go func() {
		n := 0
		defer func() { wrote <- n }()
		for ; n < pairs; n++ {
			id := uint32(2*n + 1)
			if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
				BlockFragment: rc.block(":method", "GET", ":scheme", "http", ":authority", "app.test", ":path", "/")}) != nil {
				return
			}
			if rc.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	ga := rc.goAway(t)
	rc.Close()
	n := <-wrote
	if ga == nil || ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("got GOAWAY %v after %d of %d pairs; want ENHANCE_YOUR_CALM", ga, n, pairs)
	}
	if got := h.metric(`agimo_h2_protocol_errors_total{type="conn_ENHANCE_YOUR_CALM_too_many_early_resets"}`); got != 1 {
		t.Errorf("too_many_early_resets errors = %v; want 1", got)
	}
	checkPromtool(t, h, "agimo_h2_protocol_errors_total")
	unblock()
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	waitNoHandlers(t)
	held.Wait()
	// Counted streams: those whose handler started, at most the 250 that
	// may run at once plus those started as earlier ones ended.
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got < 250 || got >= pairs {
		t.Errorf("requests_total = %v; want between 250 and %d", got, pairs)
	}
}

// CONTINUATION flood (CVE-2024-27316): a header block that never ends,
// spread over CONTINUATION frames, is refused once it passes the header
// list limit (max_header_size): the server sends GOAWAY PROTOCOL_ERROR
// while the client is still sending it, rather than buffering it until
// END_HEADERS, and no stream starts.
func TestContinuationFloodBounded(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "10s"`, "timeout = \"10s\"\nmax_header_size = \"8KiB\"", 1))
	// x/net/http2 logs the connection error before its GOAWAY; a client
	// can cause it, so it goes to the debug log, not the standard logger.
	var stdlog lockedBuffer
	log.SetOutput(&stdlog)
	defer log.SetOutput(os.Stderr)
	rc := dialRaw(t, h.addr)
	const limit = 64 << 20 // what an unbounded server would take in
	wrote := make(chan int, 1)
	go func() {
		n := 0
		defer func() { wrote <- n }()
		if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true,
			BlockFragment: rc.block(":method", "GET", ":scheme", "http", ":authority", "app.test", ":path", "/")}) != nil {
			return
		}
		pad := strings.Repeat("a", 1000)
		for i := 0; n < limit; i++ {
			// Literal fields without indexing: each costs its full size.
			rc.buf.Reset()
			_ = rc.enc.WriteField(hpack.HeaderField{Name: "x-pad", Value: pad, Sensitive: true})
			if rc.fr.WriteContinuation(1, false, rc.buf.Bytes()) != nil {
				return
			}
			n += rc.buf.Len()
		}
	}()
	ga := rc.goAway(t)
	rc.Close() // unblocks the writer if the server stopped reading
	n := <-wrote
	if ga == nil || ga.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("got GOAWAY %v; want PROTOCOL_ERROR", ga)
	}
	if n >= limit {
		t.Errorf("the server read all %d bytes of the header block; want it refused past max_header_size", n)
	}
	if ga.LastStreamID > 1 {
		t.Errorf("GOAWAY last stream %d; want at most 1", ga.LastStreamID)
	}
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 0 {
		t.Errorf("requests_total = %v; want 0 (no stream started)", got)
	}
	if got := stdlog.String(); got != "" {
		t.Errorf("standard logger got %q; want nothing (per-connection errors at debug)", got)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// checkPromtool runs Prometheus's linter on family as the admin port
// exposes it: a HELP text (stats/help.go), a TYPE, a counter's _total.
// promtool comes from Debian's prometheus package; without it the test
// fails, as proxy's TestMetricsPromtoolClean does.
func checkPromtool(t *testing.T, h *harness, family string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install prometheus): %v", err)
	}
	var raw, all bytes.Buffer
	h.set.WritePrometheus(&raw)
	stats.WriteWithHelp(&all, raw.Bytes())
	var ours strings.Builder
	for _, line := range strings.SplitAfter(all.String(), "\n") {
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		if strings.HasPrefix(name, family) {
			ours.WriteString(line)
		}
	}
	if !strings.Contains(ours.String(), "# HELP "+family+" ") {
		t.Fatalf("no HELP text for %s:\n%s", family, ours.String())
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(ours.String())
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s\non:\n%s", err, out, ours.String())
	}
}

// Rapid reset against a cold service: each stream parks and its reset
// ends the park at once, so the handlers keep up and the connection may
// live; whatever the server decides, the gauges settle at 0 and every
// stream's goroutine ends.
func TestRapidResetOnColdServiceSettles(t *testing.T) {
	h := startHarness(t, oneService)
	rc := dialRaw(t, h.addr)
	const pairs = 3000
	wrote := make(chan error, 1)
	go func() {
		for n := range pairs {
			id := uint32(2*n + 1)
			if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
				BlockFragment: rc.block(":method", "GET", ":scheme", "http", ":authority", "app.test", ":path", "/")}); err != nil {
				wrote <- err
				return
			}
			if err := rc.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
				wrote <- err
				return
			}
		}
		// A PING after the last pair: its ACK says the server has read
		// them all, unless it ended the connection first.
		wrote <- rc.fr.WritePing(false, [8]byte{'d', 'o', 'n', 'e'})
	}()
	_ = rc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			break // closed by the server
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == [8]byte{'d', 'o', 'n', 'e'} {
			break
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			break
		}
	}
	rc.Close()
	<-wrote
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	waitNoHandlers(t)
	t.Logf("requests counted: %v; protocol errors: %v", h.metric(`agimo_requests_total{host="app.test"}`),
		h.metric(`agimo_h2_protocol_errors_total{type="conn_ENHANCE_YOUR_CALM_too_many_early_resets"}`))
}
