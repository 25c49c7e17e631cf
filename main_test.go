package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConf = `
# the default timeout waiting for the upstream to scale up from zero
timeout = '5s'

[[services]]
host = "example.com"
type = "deploy" # "deployment" | "statefulset" | "deploy" | "sts"
namespace = "default"
name = "example"
service_name = "example"
service_port = 80
`

// --check validates and exits 0 or 1 with errors naming file and line.
func TestCheck(t *testing.T) {
	good := writeFile(t, "good.toml", goodConf)
	bad := writeFile(t, "bad.toml", strings.Replace(goodConf, "service_port = 80", "service_port = 70000", 1))
	ingressOnly := writeFile(t, "ingress.toml", "ingress_class = \"agimo\"\n")
	gatewayOnly := writeFile(t, "gateway.toml", "gateway_class = \"agimo\"\n")
	badPair := writeFile(t, "pair.toml", goodConf+"tls_cert_file = \"/nonexistent/c.pem\"\ntls_key_file = \"/nonexistent/k.pem\"\n")
	for _, tc := range []struct {
		name    string
		args    []string
		env     string
		wantErr string
		wantOut string
	}{
		{"good", []string{"--check", "--conf", good}, "", "", "ok, 1 services"},
		{"env", []string{"--check"}, good, "", "ok, 1 services"},
		{"bad", []string{"--check", "--conf", bad}, "", "bad.toml:11: services[0].service_port: port 70000 out of range", ""},
		{"missing-file", []string{"--check", "--conf", "/nonexistent.toml"}, "", "no such file", ""},
		{"bad-cert-pair", []string{"--check", "--conf", badPair}, "", "pair.toml:12: services[0].tls_cert_file: cannot load the pair /nonexistent/c.pem", ""},
		{"no-conf", []string{"--check"}, "", "no config file", ""},
		{"bad-flag", []string{"--nope"}, "", "flag provided but not defined", ""},
		{"stray-arg", []string{"--conf", good, "extra"}, "", "unexpected arguments", ""},
		{"bad-access-log", []string{"--conf", good, "--access-log", "/var/log/a"}, "", `invalid --access-log "/var/log/a"`, ""},
		{"bad-access-log-format", []string{"--conf", good, "--access-log-format", "xml"}, "", `invalid --access-log-format "xml"`, ""},
		{"bad-access-log-sample", []string{"--conf", good, "--access-log-sample", "0"}, "", "invalid --access-log-sample 0", ""},
		{"bad-access-log-query-max", []string{"--conf", good, "--access-log-query-max", "-1"}, "", "invalid --access-log-query-max -1", ""},
		{"bad-publish-service", []string{"--conf", good, "--publish-service", "agimo"}, "", `invalid --publish-service "agimo": want NAMESPACE/NAME`, ""},
		{"ingress-only", []string{"--check", "--conf", ingressOnly}, "", "", "ok, 0 services"},
		{"gateway-only", []string{"--check", "--conf", gatewayOnly}, "", "", "ok, 0 services"},
		{"bad-leader-elect", []string{"--conf", good, "--leader-elect=maybe"}, "", "invalid boolean value", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AGIMO_CONF", tc.env)
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				if !strings.Contains(out.String(), tc.wantOut) {
					t.Errorf("stdout = %q; want it to contain %q", out.String(), tc.wantOut)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error()+errOut.String(), tc.wantErr) {
				t.Errorf("err = %v (stderr %q); want it to contain %q", err, errOut.String(), tc.wantErr)
			}
		})
	}
}

// fakeAPIServer answers the list and watch requests of Agimo's informers
// with lists of objs (Services and EndpointSlices, by namespace, and by
// name for a field selector) and watches that stay open, like an API
// server whose objects never change (newFakeAPI's Put changes them); with
// no objs, no service is ready. Everything in namespace lockedNamespace is
// forbidden. Label selectors are not applied: Agimo's name every
// configured service, and tests pass objects of those only. client-go's
// watch-list is turned off so plain list + watch suffices.
func fakeAPIServer(t *testing.T, objs ...metav1.Object) string {
	t.Helper()
	kubeconfig, _ := newFakeAPI(t, objs...)
	return kubeconfig
}

// lockedNamespace is the namespace fakeAPIServer answers 403 for.
const lockedNamespace = "locked"

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex // guards b
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

// The whole lifecycle through run: ready after the informer sync; on the
// signal /readyz fails at once while the proxy keeps serving for the drain
// delay; then the parked request is answered 503 with Retry-After and run
// returns nil.
func TestLifecycle(t *testing.T) {
	kubeconfig := fakeAPIServer(t)
	cfg := writeFile(t, "agimo.toml", strings.Replace(goodConf, "'5s'", "'60s'", 1))
	port, mport := freePort(t), freePort(t)
	ctx, signal := context.WithCancel(context.Background())
	defer signal()
	var logs syncBuffer
	result := make(chan error, 1)
	go func() {
		result <- run(ctx, []string{
			"--conf", cfg, "--kubeconfig", kubeconfig, "--address", "127.0.0.1",
			"--port", port, "--prometheus-exporter-port", mport,
			"--drain-delay", "300ms", "--shutdown-timeout", "5s",
			"--prometheus-address", "http://prometheus.invalid",
		}, io.Discard, &logs)
	}()
	status := func(path string) int {
		resp, err := http.Get("http://127.0.0.1:" + mport + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !f(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
		}
	}
	waitFor("/readyz 200", func() bool { return status("/readyz") == 200 })
	if got := status("/healthz"); got != 200 {
		t.Errorf("/healthz = %d; want 200", got)
	}
	for _, path := range []string{"/metrics", "/"} {
		resp, err := http.Get("http://127.0.0.1:" + mport + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `agimo_requests_total{host="example.com"} 0`) {
			t.Errorf("%s lacks agimo_requests_total for example.com:\n%s", path, body)
		}
	}
	if !strings.Contains(logs.String(), "readiness now comes from the Kubernetes API") {
		t.Errorf("no log line about the ignored --prometheus-address")
	}

	// Park a request: the service has no endpoints.
	parked := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/", nil)
		req.Host = "example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			parked <- nil
			return
		}
		resp.Body.Close()
		parked <- resp
	}()
	waitFor("a parked request", func() bool {
		resp, err := http.Get("http://127.0.0.1:" + mport + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `agimo_parked_requests{host="example.com"} 1`)
	})

	signal()
	waitFor("/readyz 503 while draining", func() bool { return status("/readyz") == 503 })
	select {
	case <-parked:
		t.Fatal("parked request answered before the drain delay ended")
	default:
	}
	select {
	case resp := <-parked:
		if resp != nil && (resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "") {
			t.Errorf("parked request got %d Retry-After=%q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("parked request not answered at shutdown")
	}
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("run returned %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the signal")
	}
}
