//go:build node

package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRollingRestartUnderLoad: `kubectl rollout restart` of Agimo while requests flow
// through its Service (new connections and keep-alive ones), a WebSocket is open and
// requests are parked on a workload at zero. Nothing is lost: the drain delay keeps a
// terminating pod serving while kube-proxy stops sending it new connections (/readyz fails
// at SIGTERM), in-flight and parked requests finish within the shutdown timeout, and the
// kubelet's grace period outlasts both.
func TestRollingRestartUnderLoad(t *testing.T) {
	const ns, rel, warm, cold = "roll", "agimo-roll", "warm.example.com", "cold.example.com"
	app(t, ns, "warm")
	app(t, ns, "cold")
	kubectl(t, "scale", "-n", ns, "deployment/warm", "--replicas=1")
	kubectl(t, "rollout", "status", "-n", ns, "deployment/warm", "--timeout=60s")
	config := fmt.Sprintf(`timeout = '60s'
[[services]]
host = '%s'
type = 'deployment'
namespace = '%s'
name = 'warm'
service_name = 'warm'
service_port = 80
[[services]]
host = '%s'
type = 'deployment'
namespace = '%s'
name = 'cold'
service_name = 'cold'
service_port = 80
`, warm, ns, cold, ns)
	values := configValues(t, config)
	install(t, rel, rel, false, values, valuesFile(t, "agimo:\n  drainDelaySeconds: 3\n  shutdownTimeoutSeconds: 15\n"))
	ip := clusterIP(t, rel, rel)
	waitRouted(t, ip)
	waitFor(t, 30*time.Second, "warm answering through agimo", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		code, _, err := get(ctx, ip, warm, "/")
		return code == http.StatusOK, err
	})

	// Steady load: one client reusing connections, one opening a new one per request.
	stop := make(chan struct{})
	var ok atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for _, keepAlive := range []bool{true, false} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: !keepAlive}, Timeout: 30 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/load-%d", ip, i), nil)
				req.Host = warm
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("keep-alive=%v %s: %v", keepAlive, time.Now().Format("15:04:05.000"), err))
					mu.Unlock()
					continue
				}
				ok.Add(1)
				time.Sleep(20 * time.Millisecond) // pacing, not an assertion
			}
		}()
	}

	ws := dialWS(t, ip, warm)
	defer ws.Close()
	echo(t, ws, "before the restart")

	const parked = 3
	type result struct {
		code int
		body string
		err  error
	}
	results := make(chan result, parked)
	for i := 0; i < parked; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			code, body, err := get(ctx, ip, cold, "/parked")
			results <- result{code, body, err}
		}()
	}
	waitFor(t, 20*time.Second, "requests parked on cold", func() (bool, error) {
		return metric(t, rel, rel, "agimo_parked_requests", cold) == parked, nil
	})

	old := map[string]bool{}
	for _, p := range agimoPods(t, rel, rel) {
		old[p.Name] = true
	}
	start := time.Now()
	kubectl(t, "rollout", "restart", "-n", rel, "deployment/"+rel)
	waitFor(t, 60*time.Second, "an old agimo pod terminating", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pods, err := env.client.CoreV1().Pods(rel).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if old[p.Name] && p.DeletionTimestamp != nil {
				return true, nil
			}
		}
		return false, nil
	})
	// The open WebSocket still works while its pod drains.
	echo(t, ws, "during the restart")
	// Parked requests are released by a scale-up that happens mid-restart.
	kubectl(t, "scale", "-n", ns, "deployment/cold", "--replicas=1")
	for i := 0; i < parked; i++ {
		r := <-results
		if r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "pod=cold-") {
			t.Errorf("parked request: got %d %q %v; want 200 from cold", r.code, r.body, r.err)
		}
	}
	kubectl(t, "rollout", "status", "-n", rel, "deployment/"+rel, "--timeout=120s")
	waitPodsGone(t, rel, old, "old agimo pods gone")
	close(stop)
	wg.Wait()
	t.Logf("rolling restart: %s until the old pods were gone; %d requests answered meanwhile", time.Since(start).Round(time.Second), ok.Load())
	if len(failures) > 0 {
		t.Errorf("%d requests failed during the rolling restart:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	if ok.Load() == 0 {
		t.Error("no request answered during the rolling restart")
	}
	// The WebSocket opened before the restart went to an old pod: now gone, the connection
	// must be closed (not left hanging), after the drain delay and shutdown timeout.
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Error("WebSocket through a deleted agimo pod still delivers messages")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("WebSocket through a deleted agimo pod left open: %v", err)
	} else {
		t.Logf("WebSocket through the old pod ended with: %v", err)
	}
	// A new WebSocket goes to the new pods.
	ws2 := dialWS(t, ip, warm)
	defer ws2.Close()
	echo(t, ws2, "after the restart")
}

func dialWS(t *testing.T, ip, host string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{
		HandshakeTimeout: 30 * time.Second,
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", ip+":80")
		},
	}
	c, _, err := d.Dial("ws://"+host+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket to %s via %s: %v", host, ip, err)
	}
	return c
}

func echo(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("websocket write %q: %v", msg, err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, reply, err := c.ReadMessage()
	if err != nil || !strings.HasSuffix(string(reply), msg) {
		t.Fatalf("websocket echo of %q: got %q %v", msg, reply, err)
	}
}
