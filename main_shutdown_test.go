package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// shutdownChildEnv marks the test binary that TestShutdownUnderLoad runs
// again for the test proper.
const shutdownChildEnv = "AGIMO_TEST_SHUTDOWN_CHILD"

// Issue 6, "Shutdown and soak": SIGTERM with in-flight requests, parked
// requests and 1,000 open WebSockets. Every request gets a complete
// answer, tunnels close at the deadline, run returns before the grace
// period, and nothing is lost or leaked.
//
// The test runs in a process of its own. run sets klog's global logger
// (watch.RouteKlog), which client-go goroutines of an earlier run in the
// same process (TestLifecycle's) may have read without any
// synchronisation: the race detector fails the package. A process of its
// own also keeps its 4,000 descriptors and its goroutine count apart.
func TestShutdownUnderLoad(t *testing.T) {
	if os.Getenv(shutdownChildEnv) == "" {
		runChild(t, 60*time.Second)
		return
	}
	const (
		nWS     = 1000
		nSlow   = 20 // half slow to answer, half slow to stream their body
		nParked = 50 // half bodiless (the lot), half with a body (goroutine park)
		drain   = 500 * time.Millisecond
		// Far longer than the shutdown takes, so that a shutdown that
		// waited for it (instead of for the in-flight requests) cannot be
		// mistaken for one slowed by a loaded machine.
		grace = 20 * time.Second
		// Longer than the drain delay, so the slow requests are still in
		// flight when the proxy stops accepting.
		slowFor = 1500 * time.Millisecond
	)
	// Each WebSocket costs four descriptors: client, proxy ×2, upstream.
	raiseNoFile(t, 4*nWS+1024)

	up := newShutdownUpstream(t, slowFor)
	kubeconfig := fakeAPIServer(t, readyService("default", "app", 80, up.addr())...)
	cfg := writeFile(t, "agimo.toml", `
timeout = '60s'
[[services]]
host = "app.test"
type = "deployment"
namespace = "default"
name = "app"
service_name = "app"
service_port = 80
[[services]]
host = "cold.test"
type = "deployment"
namespace = "default"
name = "cold"
service_name = "cold"
service_port = 80
`)
	port, mport := freePort(t), freePort(t)
	proxyURL, adminURL := "http://127.0.0.1:"+port, "http://127.0.0.1:"+mport
	base := settledGoroutines()

	ctx, signal := context.WithCancel(context.Background())
	defer signal()
	var logs syncBuffer
	result := make(chan error, 1)
	go func() {
		result <- run(ctx, []string{
			"--conf", cfg, "--kubeconfig", kubeconfig, "--address", "127.0.0.1",
			"--port", port, "--prometheus-exporter-port", mport,
			"--drain-delay", drain.String(), "--shutdown-timeout", grace.String(),
		}, io.Discard, &logs)
	}()

	// Clients of their own, so that their idle connections can be closed
	// before goroutines are counted. A timeout turns a hang into an error.
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 100}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	admin := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer admin.CloseIdleConnections()
	adminGet := func(path string) (int, string) {
		resp, err := admin.Get(adminURL + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !f(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
		}
	}
	metricIs := func(series string, want int) func() bool {
		return func() bool {
			_, b := adminGet("/metrics")
			return strings.Contains(b, series+" "+strconv.Itoa(want)+"\n")
		}
	}
	waitFor("/readyz 200", func() bool { code, _ := adminGet("/readyz"); return code == 200 })
	waitFor("app.test ready", func() bool {
		resp, err := hc.Do(newRequest(t, "GET", proxyURL+"/fast", "app.test", ""))
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// Every request is accounted for: an outcome per request, or a
	// missing one shows as a count short.
	type outcome struct {
		status     int
		retryAfter string
		body       []byte
		err        error
		at         time.Time
	}
	var wg sync.WaitGroup
	send := func(out *outcome, req *http.Request) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Do(req)
			if err == nil {
				out.status, out.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
				out.body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			out.err, out.at = err, time.Now()
		}()
	}

	// 1,000 WebSockets, each proven to echo, then each read by a goroutine
	// that notes when its connection is closed.
	dialer := &websocket.Dialer{
		NetDial:          func(string, string) (net.Conn, error) { return net.Dial("tcp", "127.0.0.1:"+port) },
		ReadBufferSize:   256,
		WriteBufferSize:  256,
		HandshakeTimeout: 10 * time.Second,
	}
	wss := make([]*websocket.Conn, nWS)
	wsClosed := make([]outcome, nWS)
	var dialErrs atomic.Int64
	var dials sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		dials.Add(1)
		go func() {
			defer dials.Done()
			for i := int(next.Add(1) - 1); i < nWS; i = int(next.Add(1) - 1) {
				c, _, err := dialer.Dial("ws://app.test/ws", nil)
				if err == nil {
					err = c.WriteMessage(websocket.TextMessage, []byte("hi"))
				}
				if err == nil {
					var msg []byte
					if _, msg, err = c.ReadMessage(); err == nil && string(msg) != "hi" {
						err = fmt.Errorf("echo %q; want %q", msg, "hi")
					}
				}
				if err != nil {
					if dialErrs.Add(1) == 1 {
						t.Errorf("websocket %d: %v", i, err)
					}
					if c != nil {
						c.Close()
					}
					continue
				}
				wss[i] = c
			}
		}()
	}
	dials.Wait()
	if n := dialErrs.Load(); n > 0 {
		t.Fatalf("%d of %d websockets failed to open", n, nWS)
	}
	for i, c := range wss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := c.ReadMessage()
			wsClosed[i].err, wsClosed[i].at = err, time.Now()
		}()
	}
	waitFor("1000 open tunnels", metricIs(`agimo_open_tunnels{host="app.test"}`, nWS))

	// Slow requests in flight at the upstream.
	slow := make([]outcome, nSlow)
	for i := range slow {
		path := "/slow-head"
		if i%2 == 1 {
			path = "/slow-body"
		}
		send(&slow[i], newRequest(t, "GET", proxyURL+path, "app.test", ""))
	}
	waitFor("slow requests at the upstream", func() bool { return up.slowStarted.Load() == nSlow })

	// Parked requests on the cold service.
	parked := make([]outcome, nParked)
	for i := range parked {
		req := newRequest(t, "GET", proxyURL+"/p/"+strconv.Itoa(i), "cold.test", "")
		if i%2 == 1 {
			req = newRequest(t, "POST", proxyURL+"/p/"+strconv.Itoa(i), "cold.test", "a parked body")
		}
		send(&parked[i], req)
	}
	waitFor("50 parked requests", metricIs(`agimo_parked_requests{host="cold.test"}`, nParked))

	// The signal.
	signalAt := time.Now()
	hardStop := signalAt.Add(drain + grace + 5*time.Second)
	for _, c := range wss {
		// A tunnel left open shows as a timeout, not a hung test.
		c.NetConn().SetReadDeadline(hardStop)
	}
	signal()
	waitFor("/readyz 503", func() bool { code, _ := adminGet("/readyz"); return code == 503 })
	if d := time.Since(signalAt); d >= drain {
		t.Errorf("/readyz turned 503 after %v; want at once, within the drain delay %v", d, drain)
	}
	// The drain delay serves on: load balancers may still send.
	var during outcome
	send(&during, newRequest(t, "GET", proxyURL+"/fast", "app.test", ""))

	var runErr error
	var runTook time.Duration
	select {
	case runErr = <-result:
		runTook = time.Since(signalAt)
	case <-time.After(drain + grace + 5*time.Second):
		t.Fatalf("run did not return after the signal; logs:\n%s", logs.String())
	}
	wg.Wait()
	if runErr != nil {
		t.Errorf("run returned %v; want nil", runErr)
	}
	// In-flight requests end after slowFor; nothing waits for the grace
	// period. The bound leaves room for a loaded 2-core machine.
	if limit := drain + grace/2; runTook > limit {
		t.Errorf("run returned %v after the signal; want well before drain+grace (%v)", runTook, limit)
	}

	// Counted by kind: every request has an answer (or the close that is
	// a tunnel's answer), and the tally shows none missing.
	type tally struct{ sent, ok int }
	counts := map[string]*tally{}
	check := func(kind, bad string) {
		c := counts[kind]
		if c == nil {
			c = &tally{}
			counts[kind] = c
		}
		c.sent++
		if bad == "" {
			c.ok++
			return
		}
		if c.sent-c.ok <= 3 { // a few examples, not a thousand lines
			t.Errorf("%s %d: %s", kind, c.sent-1, bad)
		}
	}
	for i, o := range slow {
		want := up.body(i%2 == 1)
		switch {
		case o.err != nil:
			check("in-flight", fmt.Sprintf("error %v after %v; want 200 with the full body", o.err, o.at.Sub(signalAt)))
		case o.status != 200 || !bytes.Equal(o.body, want):
			check("in-flight", fmt.Sprintf("got %d with %d bytes; want 200 with %d bytes", o.status, len(o.body), len(want)))
		default:
			check("in-flight", "")
		}
	}
	for _, o := range parked {
		switch d := o.at.Sub(signalAt); {
		case o.err != nil:
			check("parked", fmt.Sprintf("error %v after %v; want 503 with Retry-After", o.err, d))
		case o.status != 503 || o.retryAfter == "":
			check("parked", fmt.Sprintf("got %d Retry-After=%q; want 503 with Retry-After", o.status, o.retryAfter))
		case d < drain:
			check("parked", fmt.Sprintf("answered %v after the signal; want after the drain delay %v", d, drain))
		default:
			check("parked", "")
		}
	}
	for _, o := range wsClosed {
		var ne net.Error
		switch d := o.at.Sub(signalAt); {
		case errors.As(o.err, &ne) && ne.Timeout():
			check("websocket", fmt.Sprintf("still open %v after the signal", d))
		case o.err == nil:
			check("websocket", "read a message; want the connection closed")
		case d < drain || d > drain+grace:
			check("websocket", fmt.Sprintf("closed %v after the signal; want between %v and %v", d, drain, drain+grace))
		default:
			check("websocket", "")
		}
	}
	switch {
	case during.err != nil || during.status != 200:
		check("during drain", fmt.Sprintf("got %d, %v; want 200", during.status, during.err))
	default:
		check("during drain", "")
	}
	for _, kind := range []string{"in-flight", "parked", "websocket", "during drain"} {
		c := counts[kind]
		t.Logf("%-12s sent %4d, answered as wanted %4d", kind, c.sent, c.ok)
	}
	if !strings.Contains(logs.String(), `"tunnels":1000`) {
		t.Errorf("no log line counting 1000 closed tunnels; logs:\n%s", logs.String())
	}
	span := func(outs []outcome) string {
		ds := make([]time.Duration, len(outs))
		for i, o := range outs {
			ds[i] = o.at.Sub(signalAt).Round(time.Millisecond)
		}
		return fmt.Sprintf("%v–%v", slices.Min(ds), slices.Max(ds))
	}
	t.Logf("after the signal: parked answered %s, websockets closed %s, in-flight done %s; run returned %v (drain %v, grace %v)",
		span(parked), span(wsClosed), span(slow), runTook, drain, grace)

	// Nothing outlives run but what the test itself keeps: its servers.
	for _, c := range wss {
		c.Close()
	}
	tr.CloseIdleConnections()
	admin.CloseIdleConnections()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections() // client-go's
	waitGoroutines(t, base+10)
}

// runChild runs the test binary again for t alone, with shutdownChildEnv
// set, and fails t with the child's output if the child fails.
func runChild(t *testing.T, timeout time.Duration) {
	t.Helper()
	if d, ok := t.Deadline(); ok && time.Until(d)-5*time.Second < timeout {
		timeout = time.Until(d) - 5*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1",
		"-test.v", "-test.timeout="+timeout.String())
	cmd.Env = append(os.Environ(), shutdownChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a child process: %v\n%s", t.Name(), err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("%s in a child process did not pass:\n%s", t.Name(), out)
	}
	t.Logf("child process:\n%s", out)
}

// shutdownUpstream is the ready service's workload: slow answers, slow
// bodies, fast answers and a WebSocket echo.
type shutdownUpstream struct {
	*httptest.Server
	slowStarted atomic.Int64
}

const slowPieces, pieceSize = 8, 8 << 10

func newShutdownUpstream(t *testing.T, slowFor time.Duration) *shutdownUpstream {
	t.Helper()
	u := &shutdownUpstream{}
	upgrader := websocket.Upgrader{ReadBufferSize: 256, WriteBufferSize: 256}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fast":
			io.WriteString(w, "ok")
		case "/slow-head": // thinks, then answers at once
			u.slowStarted.Add(1)
			time.Sleep(slowFor)
			w.Write(u.body(false))
		case "/slow-body": // answers at once, then trickles its body
			u.slowStarted.Add(1)
			body := u.body(true)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(200)
			for i := range slowPieces {
				w.(http.Flusher).Flush()
				time.Sleep(slowFor / slowPieces)
				w.Write(body[i*pieceSize : (i+1)*pieceSize])
			}
		default:
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				kind, msg, err := c.ReadMessage()
				if err != nil || c.WriteMessage(kind, msg) != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(u.Close)
	return u
}

// body is a slow response's body: each piece a different byte, so that a
// lost, repeated or reordered piece shows.
func (u *shutdownUpstream) body(trickled bool) []byte {
	b := make([]byte, 0, slowPieces*pieceSize)
	for i := range slowPieces {
		c := byte('a' + i)
		if trickled {
			c = byte('A' + i)
		}
		b = append(b, bytes.Repeat([]byte{c}, pieceSize)...)
	}
	return b
}

func (u *shutdownUpstream) addr() string { return u.Listener.Addr().String() }

// readyService returns a Service with port 80 named "http" and an
// EndpointSlice that lists addr as its one ready endpoint, for
// fakeAPIServer, which does not check that the address is a pod's.
func readyService(ns, name string, port int32, addr string) []metav1.Object {
	host, ps, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(ps)
	tcp, portName, ready := corev1.ProtocolTCP, "http", true
	targetPort := int32(p)
	return []metav1.Object{
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, ResourceVersion: "1"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
				Name: portName, Port: port, Protocol: tcp, TargetPort: intstr.FromInt32(targetPort),
			}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: name + "-1", Namespace: ns, ResourceVersion: "1",
				Labels: map[string]string{discoveryv1.LabelServiceName: name},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &targetPort, Protocol: &tcp}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		},
	}
}

func newRequest(t *testing.T, method, url, host, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	return req
}

// raiseNoFile lifts the soft limit on open descriptors to at least want
// for the test (Go raises it to the hard limit at start on Linux, but a
// low hard limit is worth a clear skip rather than EMFILE).
func raiseNoFile(t *testing.T, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	if lim.Max < want {
		t.Skipf("RLIMIT_NOFILE hard limit %d; want at least %d", lim.Max, want)
	}
	old := lim
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// settledGoroutines returns the goroutine count once it stops changing.
func settledGoroutines() int {
	prev := -1
	for range 50 {
		n := runtime.NumGoroutine()
		if n == prev {
			return n
		}
		prev = n
		time.Sleep(20 * time.Millisecond)
	}
	return prev
}

// waitGoroutines polls until at most want goroutines run, and fails with
// the stacks of those that do not end.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			t.Logf("goroutines %d (baseline + slack %d)", n, want)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 4<<20)
			stacks := string(buf[:runtime.Stack(buf, true)])
			t.Fatalf("goroutines = %d; want at most %d\n%s", n, want, clipStacks(stacks, 60))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clipStacks keeps the first n goroutine stacks.
func clipStacks(s string, n int) string {
	gs := strings.Split(s, "\n\n")
	return strings.Join(gs[:min(n, len(gs))], "\n\n")
}
