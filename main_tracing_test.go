package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agimo/agimo/tracing/otlptest"
)

// An invalid --otlp-endpoint or --otlp-sample, from the flag or the
// environment, stops Agimo at start, --check included, naming the flag.
func TestOTLPFlagErrors(t *testing.T) {
	good := writeFile(t, "good.toml", goodConf)
	for _, tc := range []struct {
		name, env string
		args      []string
		wantErr   string
	}{
		{"no-scheme", "", []string{"--otlp-endpoint", "collector:4318"}, `invalid --otlp-endpoint "collector:4318"`},
		{"grpc", "", []string{"--otlp-endpoint", "grpc://collector:4317"}, `invalid --otlp-endpoint "grpc://collector:4317"`},
		{"env", "collector", nil, `invalid --otlp-endpoint "collector"`},
		{"sample", "", []string{"--otlp-endpoint", "http://collector:4318", "--otlp-sample", "1.5"}, "invalid --otlp-sample 1.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AGIMO_OTLP_ENDPOINT", tc.env)
			for _, check := range []bool{true, false} {
				args := append([]string{"--conf", good}, tc.args...)
				if check {
					args = append(args, "--check")
				}
				err := run(context.Background(), args, io.Discard, io.Discard)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("run(%q) = %v; want an error containing %q", args, err, tc.wantErr)
				}
			}
		})
	}
}

// --otlp-endpoint exports a span per request; the spans of the last
// requests reach the collector at shutdown.
func TestOTLPEndpointExports(t *testing.T) {
	rcv := otlptest.Start(t)
	up := newUpstreamServer(t)
	kubeconfig := fakeAPIServer(t, readyService("default", "example", 80, up)...)
	cfg := writeFile(t, "agimo.toml", goodConf)
	port, mport := freePort(t), freePort(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	result := make(chan error, 1)
	go func() {
		result <- run(ctx, []string{
			"--conf", cfg, "--kubeconfig", kubeconfig, "--address", "127.0.0.1",
			"--port", port, "--prometheus-exporter-port", mport,
			"--drain-delay", "0s", "--shutdown-timeout", "5s", "--access-log", "off",
			"--otlp-endpoint", rcv.URL,
		}, io.Discard, &logs)
	}()
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/traced", nil)
		req.Host = "example.com"
		req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		var err error
		if resp, err = http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agimo not serving after 20s: %v; logs:\n%s", err, logs.String())
		}
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d; want 200; logs:\n%s", resp.StatusCode, logs.String())
	}
	stop()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("run returned %v; want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after the signal")
	}
	var found bool
	for _, s := range rcv.Spans() {
		if s.Name == "GET" && s.Attrs["url.path"] == "/traced" {
			found = true
			if s.Service != "agimo" || s.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || s.ParentSpanID != "00f067aa0ba902b7" {
				t.Errorf("span %+v; want service agimo, the client's trace and parent", s)
			}
		}
	}
	if !found {
		t.Errorf("no span for GET /traced among %+v; logs:\n%s", rcv.Spans(), logs.String())
	}
}

// newUpstreamServer is an app answering 200 "ok" on a loopback port; it
// returns its address.
func newUpstreamServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
