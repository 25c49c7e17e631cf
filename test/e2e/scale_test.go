//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// awaitResult receives a background request's result or fails after d.
func awaitResult(t *testing.T, ch <-chan result, d time.Duration) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("no response within %s", d)
		return result{}
	}
}

// expectFrom fails unless r is a 200 answered by the fake pod p.
func expectFrom(t *testing.T, r result, p *fakePod) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("request failed: %v", r.Err)
	}
	if r.Status != 200 || !strings.Contains(r.Body, "pod="+p.Name+" ") {
		t.Fatalf("want 200 from pod %s, got %d %q", p.Name, r.Status, r.Body)
	}
}

// A request for a workload at zero replicas parks; the workload is scaled up (replicas
// patched, kube-controller-manager creates the Pod, the test plays kubelet and makes an
// endpoint ready) and the parked request is answered by that pod.
func TestScaleFromZero(t *testing.T) {
	for _, kind := range []string{"deployment", "statefulset"} {
		t.Run(kind, func(t *testing.T) {
			ns := newNamespace(t)
			w := createWorkload(t, ns, "web", kind)
			pod := startPod(t, "web-"+kind)
			a := startAgimo(t, "timeout = '60s'\n"+w.Config(), agimoOpts{})

			parked := a.getAsync(w.Host(), "/first")
			a.waitParked(t, w.Host(), 1)

			names := w.scale(t, 1) // Pods exist now, but are not ready: still parked.
			time.Sleep(300 * time.Millisecond)
			if n := a.metric(t, fmt.Sprintf("agimo_parked_requests{host=%q}", w.Host())); n != 1 {
				t.Fatalf("parked = %v after scaling without ready endpoints; want 1", n)
			}
			t0 := time.Now()
			w.setEndpoints(t, readyEndpoint(pod, names[0]))
			r := awaitResult(t, parked, 30*time.Second)
			expectFrom(t, r, pod)
			t.Logf("%s: release latency (EndpointSlice write -> parked response): %s", kind, r.Done.Sub(t0).Round(time.Millisecond))

			// Now warm: answered at once, not parked.
			r = a.get(w.Host(), "/second")
			expectFrom(t, r, pod)
			if r.Elapsed > 2*time.Second {
				t.Errorf("warm request took %s", r.Elapsed)
			}
			if got := a.metric(t, fmt.Sprintf("agimo_requests_total{host=%q}", w.Host())); got != 2 {
				t.Errorf("agimo_requests_total = %v; want 2", got)
			}
			if got := a.metric(t, fmt.Sprintf("agimo_park_duration_seconds_count{host=%q}", w.Host())); got != 1 {
				t.Errorf("agimo_park_duration_seconds_count = %v; want 1 (one request was parked)", got)
			}
		})
	}
}

// A parked request whose workload never becomes ready gets 503 with Retry-After once the
// service's timeout has passed.
func TestParkTimeout(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "cold", "deployment")
	a := startAgimo(t, "timeout = '30s'\n"+w.Config("timeout = '2s'"), agimoOpts{})

	r := a.get(w.Host(), "/")
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Status != 503 {
		t.Fatalf("status %d %q; want 503", r.Status, r.Body)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if r.Elapsed < 2*time.Second || r.Elapsed > 10*time.Second {
		t.Errorf("answered after %s; want about the service's 2s timeout", r.Elapsed)
	}
	if got := a.metric(t, fmt.Sprintf("agimo_parked_requests{host=%q}", w.Host())); got != 0 {
		t.Errorf("parked after timeout = %v; want 0", got)
	}
}

// dialWS opens a WebSocket to host through agimo (the URL carries the Host header; the
// TCP connection goes to agimo's proxy port).
func dialWS(a *agimoProc, host string) (*websocket.Conn, error) {
	d := websocket.Dialer{
		HandshakeTimeout: 60 * time.Second,
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", a.ProxyAddr)
		},
	}
	c, resp, err := d.Dial("ws://"+host+"/ws", nil)
	if err != nil && resp != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err = fmt.Errorf("%w: HTTP %d %q", err, resp.StatusCode, b)
	}
	return c, err
}

// echoWS checks that messages sent on c come back from pod p.
func echoWS(t *testing.T, c *websocket.Conn, p *fakePod) {
	t.Helper()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if want := p.Name + ": " + msg; string(got) != want {
			t.Fatalf("echo %q; want %q", got, want)
		}
	}
}

// A WebSocket handshake to a cold service parks like any request; once the workload is
// woken the session is tunnelled to the pod. A second session, now warm, goes straight
// through.
func TestWebSocketThroughWokenService(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "chat", "deployment")
	pod := startPod(t, "chat-0")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config(), agimoOpts{})

	type dialed struct {
		c   *websocket.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := dialWS(a, w.Host())
		ch <- dialed{c, err}
	}()
	a.waitParked(t, w.Host(), 1)
	names := w.scale(t, 1)
	w.setEndpoints(t, readyEndpoint(pod, names[0]))

	var d dialed
	select {
	case d = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("WebSocket handshake not released")
	}
	t.Run("parked", func(t *testing.T) {
		if d.err != nil {
			t.Fatalf("WebSocket dial: %v", d.err)
		}
		defer d.c.Close()
		echoWS(t, d.c, pod)
	})
	t.Run("warm", func(t *testing.T) {
		c, err := dialWS(a, w.Host())
		if err != nil {
			t.Fatalf("WebSocket dial: %v", err)
		}
		defer c.Close()
		echoWS(t, c, pod)
	})
}

// parkOne sends requests until one parks (agimo may still answer the first ones from
// the readiness it had before the test's last change reached it) and returns it.
func parkOne(t *testing.T, a *agimoProc, host, path string) <-chan result {
	t.Helper()
	gauge := fmt.Sprintf("agimo_parked_requests{host=%q}", host)
	before := a.metric(t, gauge)
	var parked <-chan result
	eventually(t, 20*time.Second, "a request to "+host+" to park", func() bool {
		ch := a.getAsync(host, path)
		select {
		case <-ch:
			return false // answered: the change had not reached agimo yet
		case <-time.After(300 * time.Millisecond):
		}
		if a.metric(t, gauge) > before {
			parked = ch
			return true
		}
		<-ch // just slow, not parked
		return false
	})
	return parked
}

// When a workload's endpoints turn terminating (pod shutting down) or go away (scaled to
// zero), new requests park again, and are released by the next ready pod.
func TestEndpointsRemovedParkAgain(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	first, second := startPod(t, "web-first"), startPod(t, "web-second")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config(), agimoOpts{})
	names := w.scale(t, 1)
	w.setEndpoints(t, readyEndpoint(first, names[0]))
	eventually(t, 20*time.Second, "service ready", func() bool { return a.get(w.Host(), "/").Status == 200 })

	// Terminating but still serving: not a target for new requests.
	w.setEndpoints(t, endpoint{Pod: first, PodName: names[0], Serving: true, Terminating: true})
	whileTerminating := parkOne(t, a, w.Host(), "/terminating")
	// Then gone entirely (and the old pod with it).
	w.deleteEndpoints(t)
	first.Stop()
	whileGone := a.getAsync(w.Host(), "/gone")
	a.waitParked(t, w.Host(), 2)

	w.setEndpoints(t, readyEndpoint(second, names[0]))
	expectFrom(t, awaitResult(t, whileTerminating, 30*time.Second), second)
	expectFrom(t, awaitResult(t, whileGone, 30*time.Second), second)
}

// `address` overrides where requests go; readiness still comes from the cluster.
func TestAddressOverride(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	inCluster, override := startPod(t, "web-endpoint"), startPod(t, "web-override")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config(fmt.Sprintf("address = '%s:8080'", override.IP)), agimoOpts{})

	parked := a.getAsync(w.Host(), "/")
	a.waitParked(t, w.Host(), 1) // not ready in the cluster: parks despite the address
	names := w.scale(t, 1)
	w.setEndpoints(t, readyEndpoint(inCluster, names[0]))
	expectFrom(t, awaitResult(t, parked, 30*time.Second), override)
}

// Repeats park -> EndpointSlice ready -> response, and prints the release latency
// distribution (the time from the API write to the parked request's response).
func TestReleaseLatency(t *testing.T) {
	const rounds = 10
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-latency")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config(), agimoOpts{})
	names := w.scale(t, 1)

	var lat []time.Duration
	for i := range rounds {
		w.deleteEndpoints(t)
		parked := parkOne(t, a, w.Host(), fmt.Sprintf("/round-%d", i))
		a.waitParked(t, w.Host(), 1)
		t0 := time.Now()
		w.setEndpoints(t, readyEndpoint(pod, names[0]))
		r := awaitResult(t, parked, 30*time.Second)
		expectFrom(t, r, pod)
		lat = append(lat, r.Done.Sub(t0))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
	t.Logf("release latency over %d rounds (EndpointSlice write -> parked response): min %s, median %s, max %s",
		rounds, ms(lat[0]), ms(lat[rounds/2]), ms(lat[rounds-1]))
}
