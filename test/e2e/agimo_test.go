//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agimoProc is one running agimo binary, listening on free loopback ports.
type agimoProc struct {
	ProxyAddr, MetricsAddr string
	ConfPath               string // the --conf file
	cmd                    *exec.Cmd
	logs                   *syncBuffer
	exited                 chan struct{}
	exitErr                error
	stopOnce               sync.Once

	// TLSAddr is the --tls-port address; agimo listens there only when the config has a
	// certificate or a tls_passthrough service.
	TLSAddr string
}

// agimoOpts tunes startAgimo; the zero value is an admin kubeconfig and a wait for /readyz.
type agimoOpts struct {
	kubeconfig string // default: env.kubeconfig (admin)
	noWait     bool   // do not wait for /readyz (for runs expected not to get ready)
	// confPath: run with this existing --conf file (e.g. a ConfigMap-like symlink) instead
	// of writing config to a new one; config is then ignored.
	confPath string
	args     []string // extra flags
	env      []string // extra environment, KEY=VALUE (e.g. POD_NAMESPACE)
	// proxyAddr, tlsAddr: listen there (from freeAddr) instead of on ports picked here, for
	// objects that must name Agimo's ports before it starts (a Gateway's listeners).
	proxyAddr, tlsAddr string
}

// startAgimo writes config (TOML) to a file and runs agimo with it. It stops agimo
// (SIGTERM) when the test ends, fails the test on a data race report, and prints agimo's
// log if the test failed.
func startAgimo(t *testing.T, config string, o agimoOpts) *agimoProc {
	t.Helper()
	confPath := o.confPath
	if confPath == "" {
		confPath = filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(confPath, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kc := o.kubeconfig
	if kc == "" {
		kc = env.kubeconfig
	}
	a := &agimoProc{ProxyAddr: o.proxyAddr, MetricsAddr: freeAddr(t), ConfPath: confPath, logs: &syncBuffer{}, exited: make(chan struct{})}
	if a.ProxyAddr == "" {
		a.ProxyAddr = freeAddr(t)
	}
	if a.TLSAddr = o.tlsAddr; a.TLSAddr == "" {
		a.TLSAddr = freeAddr(t)
	}
	_, pport, _ := net.SplitHostPort(a.ProxyAddr)
	_, mport, _ := net.SplitHostPort(a.MetricsAddr)
	_, tport, _ := net.SplitHostPort(a.TLSAddr)
	a.cmd = exec.Command(env.agimo,
		"--conf", confPath, "--kubeconfig", kc,
		"--address", "127.0.0.1", "--port", pport, "--prometheus-exporter-port", mport,
		"--tls-port", tport,
		"--log-level", "debug", "--log-format", "json",
		"--drain-delay", "0s", "--shutdown-timeout", "5s")
	a.cmd.Args = append(a.cmd.Args, o.args...)
	// KUBECONFIG/in-cluster must not leak in: --kubeconfig is the only source.
	a.cmd.Env = append(append(os.Environ(), "KUBECONFIG="), o.env...)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exitErr = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() { a.stop(t) })
	if !o.noWait {
		a.waitReady(t, 30*time.Second)
	}
	return a
}

// stop sends SIGTERM and waits; safe to call more than once.
func (a *agimoProc) stop(t *testing.T) {
	a.stopOnce.Do(func() { a.stopNow(t) })
}

func (a *agimoProc) stopNow(t *testing.T) {
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		t.Errorf("agimo did not stop within 15s of SIGTERM")
		a.cmd.Process.Kill()
		<-a.exited
	}
	logs := a.logs.String()
	if strings.Contains(logs, "WARNING: DATA RACE") {
		t.Errorf("agimo reported a data race")
	}
	if t.Failed() || testing.Verbose() && os.Getenv("AGIMO_E2E_LOGS") == "1" {
		t.Logf("agimo log (exit: %v):\n%s", a.exitErr, logs)
	}
}

// waitReady polls /readyz until 200; fails early if agimo exited.
func (a *agimoProc) waitReady(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		select {
		case <-a.exited:
			t.Fatalf("agimo exited before ready (%v):\n%s", a.exitErr, a.logs.String())
		default:
		}
		resp, err := plainClient.Get("http://" + a.MetricsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agimo not ready after %s:\n%s", d, a.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// plainClient never uses a proxy from the environment: every request stays on loopback.
var plainClient = &http.Client{
	Timeout:   90 * time.Second,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
}

// result is one proxied request's outcome.
type result struct {
	Status  int
	Body    string
	Header  http.Header
	Elapsed time.Duration
	Err     error
	Done    time.Time
}

// get sends GET path with the given Host through agimo.
func (a *agimoProc) get(host, path string) result { return a.getWith(host, path, nil) }

// getWith is get with extra request headers (Accept, User-Agent, ...).
func (a *agimoProc) getWith(host, path string, header http.Header) result {
	return a.getVia(plainClient, host, path, header)
}

// getVia is getWith through another client (e.g. one that keeps connections alive).
func (a *agimoProc) getVia(client *http.Client, host, path string, header http.Header) result {
	return a.do(client, "GET", host, path, header)
}

// do sends a request with any method, without a body, through agimo.
func (a *agimoProc) do(client *http.Client, method, host, path string, header http.Header) result {
	start := time.Now()
	req, _ := http.NewRequest(method, "http://"+a.ProxyAddr+path, nil)
	req.Host = host
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{Err: err, Elapsed: time.Since(start), Done: time.Now()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Body: string(b), Header: resp.Header, Err: err,
		Elapsed: time.Since(start), Done: time.Now()}
}

// getAsync sends the request in the background; receive the result from the channel.
func (a *agimoProc) getAsync(host, path string) <-chan result { return a.getWithAsync(host, path, nil) }

// getWithAsync is getAsync with extra request headers.
func (a *agimoProc) getWithAsync(host, path string, header http.Header) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- a.getWith(host, path, header) }()
	return ch
}

// metric reads one sample from /metrics, e.g. metric(t, `agimo_parked_requests{host="x"}`).
// Missing samples read as 0.
func (a *agimoProc) metric(t *testing.T, series string) float64 {
	t.Helper()
	f, err := a.scrape(series)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// scrape is metric for goroutines other than the test's (e.g. a simulated Prometheus).
func (a *agimoProc) scrape(series string) (float64, error) {
	resp, err := plainClient.Get("http://" + a.MetricsAddr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %w", series, err)
			}
			return f, nil
		}
	}
	return 0, sc.Err()
}

// waitParked waits until n requests for host are parked.
func (a *agimoProc) waitParked(t *testing.T, host string, n int) {
	t.Helper()
	series := fmt.Sprintf("agimo_parked_requests{host=%q}", host)
	eventually(t, 20*time.Second, fmt.Sprintf("%d parked request(s) for %s", n, host), func() bool {
		return a.metric(t, series) == float64(n)
	})
}

// waitLog waits until agimo's log contains every one of the substrings on one line.
func (a *agimoProc) waitLog(t *testing.T, d time.Duration, subs ...string) string {
	t.Helper()
	var found string
	eventually(t, d, fmt.Sprintf("a log line with %q", subs), func() bool {
		for _, line := range strings.Split(a.logs.String(), "\n") {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				found = line
				return true
			}
		}
		return false
	})
	return found
}

// freeAddr returns a 127.0.0.1 address with a port nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for a process's output goroutines and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
