package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// HTTP/1.1 over TLS through the whole binary (run): the TLS port's edge
// terminates, ALPN picks http/1.1, and the fasthttp front end serves the
// *tls.Conn, parking included (park.Lot watches the socket under the
// TLS layer for hang-ups, and the released request is read and answered
// through that layer).
func TestH1OverTLS(t *testing.T) {
	upgrader := websocket.Upgrader{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			c, err := upgrader.Upgrade(w, r, http.Header{"X-Seen-Proto": {r.Header.Get("X-Forwarded-Proto")}})
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
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s host=%s proto=%s body=%q", r.Method, r.URL.Path, r.Host, r.Header.Get("X-Forwarded-Proto"), body)
	}))
	defer up.Close()
	hosts := []string{"ready.test", "cold-get.test", "cold-post.test", "cold-reset.test", "cold-timeout.test",
		"cold-pipe.test", "cold-ws.test"}
	cert := newTestCert(t, hosts, nil)
	var cfg strings.Builder
	cfg.WriteString("timeout = '60s'\n")
	for _, h := range hosts {
		name := strings.TrimSuffix(h, ".test")
		fmt.Fprintf(&cfg, `
[[services]]
host = %q
type = "deployment"
namespace = "default"
name = %q
service_name = %q
service_port = 80
tls_cert_file = %q
tls_key_file = %q
`, h, name, name, cert.certFile, cert.keyFile)
		if h == "cold-timeout.test" {
			cfg.WriteString("timeout = '300ms'\n")
		}
	}
	kubeconfig, api := newFakeAPI(t, readyService("default", "ready", 80, up.Listener.Addr().String())...)
	a := startAgimo(t, cfg.String(), kubeconfig)

	// A client that speaks HTTP/1.1 only (no "h2" in its ALPN), trusts
	// only the test's certificate, and reaches every host at the TLS port.
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cert.pool(), NextProtos: []string{"http/1.1"}},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+a.tlsPort)
		},
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	type result struct {
		status     int
		body       string
		retryAfter string
		reused     bool
		err        error
	}
	do := func(method, url, body string) result {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		var reused bool
		req, err := http.NewRequest(method, url, r)
		if err != nil {
			return result{err: err}
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := hc.Do(req)
		if err != nil {
			return result{err: err}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && (resp.ProtoMajor != 1 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1") {
			err = fmt.Errorf("answered over %s, TLS %v; want HTTP/1.1 over TLS with ALPN http/1.1", resp.Proto, resp.TLS != nil)
		}
		return result{resp.StatusCode, string(b), resp.Header.Get("Retry-After"), reused, err}
	}
	check := func(got result, want string) {
		t.Helper()
		if got.err != nil || got.status != 200 || got.body != want {
			t.Errorf("got %d %q (%v); want 200 %q", got.status, got.body, got.err, want)
		}
	}
	a.waitFor(t, "ready.test ready", func() bool { return do("GET", "https://ready.test/", "").status == 200 })

	t.Run("forwarded-proto", func(t *testing.T) {
		check(do("GET", "https://ready.test/xfp", ""), `GET /xfp host=ready.test proto=https body=""`)
		// The same service on the plain port, for contrast.
		plain := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
		defer plain.CloseIdleConnections()
		resp, err := plain.Do(newRequest(t, "GET", "http://127.0.0.1:"+a.port+"/xfp", "ready.test", ""))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := `GET /xfp host=ready.test proto=http body=""`; string(b) != want {
			t.Errorf("plain port: got %q; want %q", b, want)
		}
	})

	// A parked request is released by the readiness event and answered
	// through its TLS connection, which then serves the next request.
	for _, tc := range []struct{ host, method, body string }{
		{"cold-get.test", "GET", ""},         // bodiless: parked in the lot
		{"cold-post.test", "POST", "a body"}, // with a body
	} {
		t.Run("parked-"+tc.method, func(t *testing.T) {
			name := strings.TrimSuffix(tc.host, ".test")
			got := make(chan result, 1)
			go func() { got <- do(tc.method, "https://"+tc.host+"/parked", tc.body) }()
			a.waitFor(t, "the request parked", a.metricIs(`agimo_parked_requests{host="`+tc.host+`"}`, 1))
			api.Put(readyService("default", name, 80, up.Listener.Addr().String())...)
			var r result
			select {
			case r = <-got:
			case <-time.After(30 * time.Second):
				t.Fatalf("parked request not answered 30 s after its service turned ready; logs:\n%s", a.logs.String())
			}
			check(r, fmt.Sprintf(`%s /parked host=%s proto=https body=%q`, tc.method, tc.host, tc.body))
			next := do("GET", "https://"+tc.host+"/next", "")
			check(next, fmt.Sprintf(`GET /next host=%s proto=https body=""`, tc.host))
			if !next.reused {
				t.Errorf("the request after the parked one opened a new connection; want the parked one's, kept alive")
			}
			if v := a.metric(`agimo_parked_requests{host="` + tc.host + `"}`); v != "0" {
				t.Errorf("agimo_parked_requests = %s; want 0", v)
			}
		})
	}

	// Two requests in one TLS record: the first parks, the second waits
	// behind it (read through the TLS layer when the first was hijacked
	// into the lot); both are answered, in order, on release.
	t.Run("parked-pipelined", func(t *testing.T) {
		c, err := tls.Dial("tcp", "127.0.0.1:"+a.tlsPort, &tls.Config{RootCAs: cert.pool(), ServerName: "cold-pipe.test", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /p1 HTTP/1.1\r\nHost: cold-pipe.test\r\n\r\nGET /p2 HTTP/1.1\r\nHost: cold-pipe.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		a.waitFor(t, "the request parked", a.metricIs(`agimo_parked_requests{host="cold-pipe.test"}`, 1))
		api.Put(readyService("default", "cold-pipe", 80, up.Listener.Addr().String())...)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for _, path := range []string{"/p1", "/p2"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response to %s: %v", path, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := `GET ` + path + ` host=cold-pipe.test proto=https body=""`; err != nil || resp.StatusCode != 200 || string(b) != want {
				t.Errorf("%s: got %d %q (%v); want 200 %q", path, resp.StatusCode, b, err, want)
			}
		}
	})

	// wss:// parks like ws://, then tunnels through the TLS layer.
	t.Run("wss-parked", func(t *testing.T) {
		d := &websocket.Dialer{
			TLSClientConfig:  &tls.Config{RootCAs: cert.pool()},
			NetDialContext:   tr.DialContext,
			HandshakeTimeout: 30 * time.Second,
		}
		type dialed struct {
			c    *websocket.Conn
			resp *http.Response
			err  error
		}
		got := make(chan dialed, 1)
		go func() {
			c, resp, err := d.Dial("wss://cold-ws.test/ws", nil)
			got <- dialed{c, resp, err}
		}()
		const host = `{host="cold-ws.test"}`
		a.waitFor(t, "the upgrade parked", a.metricIs("agimo_parked_requests"+host, 1))
		api.Put(readyService("default", "cold-ws", 80, up.Listener.Addr().String())...)
		var r dialed
		select {
		case r = <-got:
		case <-time.After(35 * time.Second):
			t.Fatalf("wss handshake not done 35 s after its service turned ready")
		}
		if r.err != nil {
			t.Fatalf("wss dial: %v", r.err)
		}
		if p := r.resp.Header.Get("X-Seen-Proto"); p != "https" {
			t.Errorf("the app saw X-Forwarded-Proto %q; want https", p)
		}
		a.waitFor(t, "one open tunnel", a.metricIs("agimo_open_tunnels"+host, 1))
		for _, msg := range []string{"hello", strings.Repeat("x", 100<<10)} {
			if err := r.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, echo, err := r.c.ReadMessage()
			if err != nil || string(echo) != msg {
				t.Fatalf("echo of %d bytes: got %d bytes (%v); want the same", len(msg), len(echo), err)
			}
		}
		r.c.Close()
		for _, series := range []string{"agimo_open_tunnels" + host, "agimo_active_requests" + host} {
			a.waitFor(t, series+" back to 0 after the close", a.metricIs(series, 0))
		}
	})

	// The lot's own answer at the park timeout goes through the TLS layer.
	t.Run("park-timeout", func(t *testing.T) {
		got := do("GET", "https://cold-timeout.test/", "")
		if got.err != nil || got.status != 503 || got.retryAfter == "" || !strings.Contains(got.body, "did not become ready") {
			t.Errorf("got %d Retry-After=%q %q (%v); want 503 with Retry-After and the reason", got.status, got.retryAfter, got.body, got.err)
		}
		if v := a.metric(`agimo_park_timeouts_total{host="cold-timeout.test"}`); v != "1" {
			t.Errorf("agimo_park_timeouts_total = %s; want 1", v)
		}
	})

	// A client that resets its TLS connection while parked frees its
	// request and its connection at once: nothing waits for the timeout.
	t.Run("reset-while-parked", func(t *testing.T) {
		tr.CloseIdleConnections()
		a.waitFor(t, "no open connection", a.metricIs("agimo_open_connections", 0))
		raw, err := net.Dial("tcp", "127.0.0.1:"+a.tlsPort)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		tc := tls.Client(raw, &tls.Config{RootCAs: cert.pool(), ServerName: "cold-reset.test", NextProtos: []string{"http/1.1"}})
		if _, err := io.WriteString(tc, "GET /parked HTTP/1.1\r\nHost: cold-reset.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		const host = `{host="cold-reset.test"}`
		a.waitFor(t, "the request parked", a.metricIs("agimo_parked_requests"+host, 1))
		for _, series := range []string{"agimo_active_requests" + host, "agimo_open_connections"} {
			if v := a.metric(series); v != "1" {
				t.Errorf("%s = %s while parked; want 1", series, v)
			}
		}
		// SO_LINGER 0: the close sends RST, not FIN (and no close_notify).
		if err := raw.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		raw.Close()
		for _, series := range []string{"agimo_parked_requests" + host, "agimo_active_requests" + host, "agimo_open_connections"} {
			a.waitFor(t, series+" back to 0 after the reset", a.metricIs(series, 0))
		}
		if v := a.metric("agimo_park_timeouts_total" + host); v != "0" {
			t.Errorf("agimo_park_timeouts_total = %s; want 0 (freed by the reset, not the timeout)", v)
		}
	})
}
