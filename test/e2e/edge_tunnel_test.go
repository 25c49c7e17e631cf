//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Issue 11, tunnels at the edge: WebSocket over TLS (terminated by Agimo) and TLS
// passthrough (not terminated), both to services at zero.

// A wss:// handshake to a cold service parks like ws://, and once released the session is
// tunnelled to the pod through the TLS connection.
func TestWebSocketOverTLSCold(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "chat", "deployment")
	ca := newCA(t, "wss CA")
	createTLSSecret(t, ns, "chat-tls", ca.issue(t, w.Host()))
	pod := startPod(t, "chat-wss")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config("tls_secret = 'chat-tls'"), agimoOpts{})

	type dialed struct {
		c   *websocket.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		d := websocket.Dialer{
			HandshakeTimeout: 60 * time.Second,
			NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", a.TLSAddr)
			},
			TLSClientConfig: &tls.Config{RootCAs: ca.pool()},
		}
		c, resp, err := d.Dial("wss://"+w.Host()+"/ws", nil)
		if err != nil && resp != nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			err = fmt.Errorf("%w: HTTP %d %q", err, resp.StatusCode, b)
		}
		ch <- dialed{c, err}
	}()
	a.waitParked(t, w.Host(), 1)
	w.warm(t, pod)
	var d dialed
	select {
	case d = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("wss handshake not released")
	}
	if d.err != nil {
		t.Fatalf("wss dial: %v", d.err)
	}
	echoWS(t, d.c, pod)
	if got := a.metric(t, series("agimo_open_tunnels", w.Host())); got != 1 {
		t.Errorf("agimo_open_tunnels = %v with the session open; want 1", got)
	}
	d.c.Close()
	eventually(t, 10*time.Second, "the tunnel to close", func() bool {
		return a.metric(t, series("agimo_open_tunnels", w.Host())) == 0 && a.metric(t, series("agimo_active_requests", w.Host())) == 0 &&
			a.metric(t, "agimo_open_connections") == 0
	})
}

// tls_passthrough = true: Agimo does not terminate the connection; it parks it on the
// ClientHello while the service is cold, then splices it to the pod, which serves TLS with
// its own certificate. The client trusts only the pod's CA (Agimo has no certificate at
// all), and the pod sees no X-Forwarded-Proto: nothing in between read the requests. The
// connection is one request and one open tunnel while it lasts, however many requests it
// carries.
func TestTLSPassthroughCold(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "secure", "deployment")
	ca := newCA(t, "pod CA")
	podCert := ca.issue(t, w.Host())
	crt, key := writePair(t, podCert)
	pod := startPodWith(t, "secure-0", env.upstream, "-cert", crt, "-key", key)
	a := startAgimo(t, "timeout = '60s'\n"+w.Config("tls_passthrough = true"), agimoOpts{})

	type dialed struct {
		c   *tls.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
			Config: &tls.Config{RootCAs: ca.pool(), ServerName: w.Host(), NextProtos: []string{"http/1.1"}}}
		c, err := d.DialContext(context.Background(), "tcp", a.TLSAddr) // handshakes
		if err != nil {
			ch <- dialed{nil, err}
			return
		}
		ch <- dialed{c.(*tls.Conn), nil}
	}()
	a.waitParked(t, w.Host(), 1)
	w.warm(t, pod)
	var d dialed
	select {
	case d = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("passthrough handshake not released")
	}
	if d.err != nil {
		t.Fatalf("TLS handshake through passthrough: %v", d.err)
	}
	defer d.c.Close()
	if got := d.c.ConnectionState().PeerCertificates[0]; !got.Equal(podCert.leaf) {
		t.Fatalf("served certificate %v; want the pod's own", got.Subject)
	}
	br := bufio.NewReader(d.c)
	for _, path := range []string{"/one", "/two"} {
		d.c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := fmt.Fprintf(d.c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, w.Host()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s through passthrough: %v", path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), "pod="+pod.Name+" ") ||
			!strings.Contains(string(b), " path="+path+" ") {
			t.Fatalf("GET %s: %d %q %v; want 200 from pod %s", path, resp.StatusCode, b, err, pod.Name)
		}
		if !strings.HasSuffix(string(b), " xfp=\n") {
			t.Errorf("pod saw %q; want no X-Forwarded-Proto (the connection is not terminated)", b)
		}
	}
	for name, want := range map[string]float64{"agimo_requests_total": 1, "agimo_open_tunnels": 1, "agimo_active_requests": 1} {
		if got := a.metric(t, series(name, w.Host())); got != want {
			t.Errorf("%s = %v with the connection open after two requests; want %v", name, got, want)
		}
	}
	if got := a.metric(t, "agimo_open_connections"); got != 1 {
		t.Errorf("agimo_open_connections = %v with the passthrough connection open; want 1 (max_connections counts it)", got)
	}
	d.c.Close()
	eventually(t, 10*time.Second, "the passthrough tunnel to close", func() bool {
		return a.metric(t, series("agimo_open_tunnels", w.Host())) == 0 && a.metric(t, series("agimo_active_requests", w.Host())) == 0 &&
			a.metric(t, "agimo_open_connections") == 0
	})
}
