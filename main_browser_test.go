package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A browser over https through a cold service with waiting_page (issue
// 11, "Tests, with real clients"): Debian's chromium, headless, loads
// https://app.test:PORT/ through Agimo's TLS port. It gets the waiting
// page first (503, reloading itself every 2 s); the test then makes the
// service ready, and a reload shows the app's own page.
//
// The browser resolves app.test to 127.0.0.1 (--host-resolver-rules)
// and trusts exactly the test's certificate, by the hash of its public
// key (--ignore-certificate-errors-spki-list, which Chromium honours
// only with a --user-data-dir of its own): certificate checking stays on
// for anything else, and the name it checks is app.test, as a user's
// browser would. The alternative, adding a test CA to an NSS database
// (certutil, from libnss3-tools), needs a tool Debian's chromium does
// not bring, for the same effect in a throwaway profile.
//
// The test drives the browser over the DevTools protocol on a pipe
// (--remote-debugging-pipe: JSON messages ended by NUL on descriptors 3
// and 4), which needs nothing beyond the standard library.
func TestBrowserWaitingPageOverHTTPS(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found on PATH: run `make tools` (hack/tools.sh installs Debian's chromium)")
	}
	// Chromium negotiates h2 (the HTTP/2 front end); with --disable-http2
	// it offers http/1.1 alone (the fasthttp front end over TLS).
	for _, proto := range []string{"h2", "http/1.1"} {
		t.Run(strings.ReplaceAll(proto, "/", ""), func(t *testing.T) {
			var appHits atomic.Int64
			var lastProto atomic.Value
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				appHits.Add(1)
				lastProto.Store(r.Header.Get("X-Forwarded-Proto"))
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, "<!doctype html><html><head><title>the app</title></head><body><h1>Hello from the app</h1></body></html>")
			}))
			defer up.Close()
			cert := newTestCert(t, []string{"app.test"}, nil)
			kubeconfig, api := newFakeAPI(t) // app.test has no endpoint yet: cold
			a := startAgimo(t, `
		timeout = '60s'
		[[services]]
		host = "app.test"
		type = "deployment"
		namespace = "default"
		name = "app"
		service_name = "app"
		service_port = 80
		waiting_page = true
		tls_cert_file = "`+cert.certFile+`"
		tls_key_file = "`+cert.keyFile+`"
		`, kubeconfig)

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			b := startBrowser(t, ctx, bin, cert, "https://app.test:"+a.tlsPort+"/", proto == "http/1.1")

			type page struct {
				Title, Body, Protocol string
				Status                int
			}
			var last page
			waitPage := func(what string, ok func(page) bool) {
				t.Helper()
				a.waitFor(t, what, func() bool {
					v, err := b.evaluate(`JSON.stringify({Title: document.title, Body: document.body ? document.body.innerText : "",
						Protocol: (performance.getEntriesByType("navigation")[0] || {}).nextHopProtocol || "",
						Status: (performance.getEntriesByType("navigation")[0] || {}).responseStatus || 0})`)
					if err != nil {
						t.Logf("evaluate: %v", err)
						return false
					}
					var p page
					if json.Unmarshal([]byte(v), &p) != nil {
						return false
					}
					last = p
					return ok(p)
				})
			}
			waitPage("the waiting page", func(p page) bool { return strings.HasPrefix(p.Title, "Starting app.test") })
			t.Logf("first: %d over %s, %q", last.Status, last.Protocol, last.Title)
			if last.Status != 503 || last.Protocol != proto {
				t.Errorf("waiting page: status %d over %q; want 503 over %s (ALPN on the TLS port)", last.Status, last.Protocol, proto)
			}
			if n := appHits.Load(); n != 0 {
				t.Errorf("the app was asked %d times while cold; want 0", n)
			}

			api.Put(readyService("default", "app", 80, up.Listener.Addr().String())...)
			// The title is known once the head is parsed, the body's text a moment
			// later: wait for both.
			waitPage("the app's page after the service turned ready", func(p page) bool {
				return p.Title == "the app" && strings.Contains(p.Body, "Hello from the app")
			})
			t.Logf("then: %d over %s, %q", last.Status, last.Protocol, last.Title)
			if last.Status != 200 || last.Protocol != proto || !strings.Contains(last.Body, "Hello from the app") {
				t.Errorf("app page: status %d over %q, body %q; want 200 over %s with the app's body", last.Status, last.Protocol, last.Body, proto)
			}
			if p, _ := lastProto.Load().(string); p != "https" {
				t.Errorf("the app got X-Forwarded-Proto %q; want https", p)
			}
			if v := a.metric(`agimo_requests_total{host="app.test"}`); v == "" || v == "0" || v == "1" {
				t.Errorf("agimo_requests_total = %q; want at least 2 (the waiting page, then the app)", v)
			}
		})
	}
}

// browser is a headless Chromium driven over the DevTools protocol on a
// pipe, attached to its one page.
type browser struct {
	in      *os.File // our end of its descriptor 3: commands
	out     *bufio.Reader
	outFile *os.File // our end of its descriptor 4: answers and events
	session string
	nextID  int
}

// startBrowser starts Chromium on url, bounded by ctx (killed at its
// end, or when the test ends), and attaches to the page. With http1 it
// does not offer h2.
func startBrowser(t *testing.T, ctx context.Context, bin string, cert *testCert, url string, http1 bool) *browser {
	t.Helper()
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	var extra []string
	if http1 {
		extra = append(extra, "--disable-http2")
	}
	cmd := exec.CommandContext(ctx, bin, append(extra,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
		"--disable-background-networking", "--disable-component-update", "--no-proxy-server",
		"--user-data-dir="+t.TempDir(),
		"--host-resolver-rules=MAP app.test 127.0.0.1",
		"--ignore-certificate-errors-spki-list="+cert.spki(),
		"--remote-debugging-pipe",
		url)...)
	cmd.ExtraFiles = []*os.File{cmdR, outW} // descriptors 3 and 4
	cmd.Stderr = &stderr
	// A process group of its own: Chromium's helpers (zygote, renderer,
	// crashpad) go with it when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	cmdR.Close()
	outW.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmdW.Close() // Chromium exits when its command pipe closes
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// A helper that outlived the browser, if any.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		outR.Close()
		if t.Failed() {
			t.Logf("chromium's stderr:\n%s", stderr.String())
		}
	})
	b := &browser{in: cmdW, out: bufio.NewReader(outR), outFile: outR}
	var targets struct {
		TargetInfos []struct{ TargetID, Type string } `json:"targetInfos"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := b.call("", "Target.getTargets", nil, &targets); err != nil {
			t.Fatalf("chromium: %v; stderr:\n%s", err, stderr.String())
		}
		for _, ti := range targets.TargetInfos {
			if ti.Type == "page" {
				var att struct{ SessionID string }
				if err := b.call("", "Target.attachToTarget", map[string]any{"targetId": ti.TargetID, "flatten": true}, &att); err != nil {
					t.Fatalf("chromium: %v", err)
				}
				b.session = att.SessionID
				return b
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium opened no page within 30 s; stderr:\n%s", stderr.String())
		}
	}
}

// call sends a DevTools command and waits at most 10 s for its answer,
// skipping events.
func (b *browser) call(session, method string, params any, result any) error {
	b.nextID++
	id := b.nextID
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	_ = b.outFile.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := b.out.ReadBytes(0)
		if err != nil {
			return fmt.Errorf("%s: reading the answer: %w", method, err)
		}
		var m struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(bytes.TrimSuffix(line, []byte{0}), &m); err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		if m.ID != id {
			continue // an event, or the answer to an abandoned call
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		if result == nil {
			return nil
		}
		return json.Unmarshal(m.Result, result)
	}
}

// evaluate returns the string value of a JavaScript expression in the
// page.
func (b *browser) evaluate(expr string) (string, error) {
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r); err != nil {
		return "", err
	}
	if r.ExceptionDetails != nil {
		return "", errors.New(r.ExceptionDetails.Text)
	}
	s, _ := r.Result.Value.(string)
	return s, nil
}
