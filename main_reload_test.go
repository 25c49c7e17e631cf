package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A reload that adds a namespace whose informers can never sync (here a
// 403 for every list: no RBAC) is rejected once reloadTimeout has passed,
// counted and logged naming what did not sync, its informers stopped; the
// next reload (the operator's revert) applies (issue 10, item 13).
func TestReloadThatCannotSyncIsRejected(t *testing.T) {
	defer func(d time.Duration) { reloadTimeout = d }(reloadTimeout)
	reloadTimeout = 2 * time.Second
	kubeconfig := fakeAPIServer(t)
	cfg := writeFile(t, "agimo.toml", goodConf)
	port, mport := freePort(t), freePort(t)
	ctx, stop := context.WithCancel(context.Background())
	var logs syncBuffer
	result := make(chan error, 1)
	go func() {
		result <- run(ctx, []string{
			"--conf", cfg, "--kubeconfig", kubeconfig, "--address", "127.0.0.1",
			"--port", port, "--prometheus-exporter-port", mport,
			"--drain-delay", "0s", "--shutdown-timeout", "2s",
		}, io.Discard, &logs)
	}()
	defer func() {
		stop()
		if err := <-result; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	metricsText := func() string {
		resp, err := http.Get("http://127.0.0.1:" + mport + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !f(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
		}
	}
	waitFor("the first sync", func() bool { return strings.Contains(metricsText(), "agimo_watch_synced 1") })
	reflectors := reflectorGoroutines()

	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(goodConf + `
[[services]]
host = "locked.example.com"
type = "deploy"
namespace = "` + lockedNamespace + `"
name = "app"
service_name = "app"
service_port = 80
`)
	waitFor("the reload to be rejected", func() bool {
		return strings.Contains(metricsText(), `agimo_config_reloads_total{result="error"} 1`)
	})
	for _, want := range []string{"config reload rejected", "endpointslices in namespace locked not synced", "forbidden"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(metricsText(), `host="locked.example.com"`) {
		t.Error("the rejected config's route is served")
	}
	// The status page shows the rejection and the routes still in force.
	statusOf := func() (v struct {
		LastReload *struct{ Result, Error string } `json:"last_reload"`
		Routes     []struct{ Host string }
	}) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+mport+"/status", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := statusOf(); v.LastReload == nil || v.LastReload.Result != "error" || !strings.Contains(v.LastReload.Error, "not synced") ||
		len(v.Routes) != 1 || v.Routes[0].Host != "example.com" {
		t.Errorf("/status after the rejected reload: %+v; want its error and example.com", v)
	}
	if n := reflectorGoroutines(); n != reflectors {
		t.Errorf("%d reflector goroutines after the rejected reload; want %d (its informers stopped)", n, reflectors)
	}

	// The revert, with one change to show it applied.
	write(strings.Replace(goodConf, `host = "example.com"`, `host = "reverted.example.com"`, 1))
	waitFor("the revert to apply", func() bool {
		m := metricsText()
		return strings.Contains(m, `agimo_config_reloads_total{result="ok"} 1`) && strings.Contains(m, `host="reverted.example.com"`)
	})
	if v := statusOf(); v.LastReload == nil || v.LastReload.Result != "ok" || v.LastReload.Error != "" ||
		len(v.Routes) != 1 || v.Routes[0].Host != "reverted.example.com" {
		t.Errorf("/status after the revert: %+v; want ok and reverted.example.com", v)
	}
}

// reflectorGoroutines counts the informers' reflectors running.
func reflectorGoroutines() int {
	buf := make([]byte, 8<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "cache.(*Reflector).RunWithContext(")
}
