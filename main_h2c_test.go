package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// An h2c upstream that stays silent past upstream_timeout while the
// client is still sending its body: the round trip is cancelled, and
// x/net/http2's goroutine that writes the request body may still be
// reading it when RoundTrip returns. The front end answers 504 only once
// that read is over (core.HeldBody): before, the HTTP/1.1 front end
// crashed the process (fasthttp's reused body stream read from the
// transport's goroutine: a nil dereference), and the HTTP/2 one raced
// with x/net/http2 recycling the stream's writer.
func TestH2CUpstreamSilentDuringUpload(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // reads nothing, answers nothing
	}), &http2.Server{}))
	defer up.Close()
	defer close(release)
	kubeconfig := fakeAPIServer(t, readyService("default", "app", 80, up.Listener.Addr().String())...)
	a := startAgimo(t, `
[[services]]
host = "h2c.test"
type = "deployment"
namespace = "default"
name = "app"
service_name = "app"
service_port = 80
protocol = "h2c"
upstream_timeout = "300ms"
`, kubeconfig)
	const active = `agimo_active_requests{host="h2c.test"}`

	t.Run("http1", func(t *testing.T) {
		c, err := net.Dial("tcp", "127.0.0.1:"+a.port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: h2c.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout || !resp.Close {
			t.Errorf("got %d, close %t; want 504 and the connection closed (the body is unread)", resp.StatusCode, resp.Close)
		}
		// The client sends on: nothing reads it but the lingering close.
		_, _ = io.WriteString(c, "5\r\nhello\r\n0\r\n\r\n")
		if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
			t.Errorf("read %q (%v) after the 504; want the connection closed", rest, err)
		}
		a.waitFor(t, active+" back to 0", a.metricIs(active, 0))
	})

	t.Run("http2", func(t *testing.T) {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+a.port)
		}}
		defer tr.CloseIdleConnections()
		body, w := io.Pipe()
		defer w.Close()
		req, err := http.NewRequest("POST", "http://h2c.test/", body)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = io.WriteString(w, "hello") }() // then nothing, until the answer
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("got %d; want 504", resp.StatusCode)
		}
		a.waitFor(t, active+" back to 0", a.metricIs(active, 0))
	})
}
