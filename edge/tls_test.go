package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// tlsRig is an Edge on a TLS port serving a.test with a certificate of
// its own CA, and the CA's file for curl.
func tlsRig(t *testing.T, o rigOpts) (*rig, *ca, string) {
	t.Helper()
	edgeCA := newCA(t, "edge CA")
	cert := edgeCA.leaf(t, "a.test")
	o.tls, o.cert = true, &cert
	r := newRig(t, o)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, edgeCA.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return r, edgeCA, caFile
}

// dialTo returns a DialContext that reaches addr whatever the URL's host.
func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

func body(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTLSALPN(t *testing.T) {
	r, edgeCA, caFile := tlsRig(t, rigOpts{})
	_, port, _ := net.SplitHostPort(r.addr)
	resolve := "a.test:" + port + ":127.0.0.1"
	url := "https://a.test:" + port
	h2tr := &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: edgeCA.pool},
		DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
			return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, r.addr)
		},
	}
	defer h2tr.CloseIdleConnections()
	h1tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: edgeCA.pool, NextProtos: []string{"http/1.1"}},
		DialContext:     dialTo(r.addr),
	}
	defer h1tr.CloseIdleConnections()
	noALPN := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: edgeCA.pool},
		DialContext:     dialTo(r.addr),
		// A TLSNextProto that is not nil keeps net/http from offering
		// ALPN h2; with no NextProtos it offers no ALPN at all.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	defer noALPN.CloseIdleConnections()
	h2 := "h2 proto=HTTP/2.0 tls=true host=a.test:" + port + " path="
	h1 := "h1 tls=true conn=*tls.Conn host=a.test:" + port + " path="
	cases := []struct {
		name  string
		get   func(t *testing.T, path string) string
		want  string
		proto string
	}{
		{"go ALPN h2", func(t *testing.T, p string) string { return body(t, &http.Client{Transport: h2tr}, url+p) }, h2, "h2"},
		{"go ALPN http/1.1", func(t *testing.T, p string) string { return body(t, &http.Client{Transport: h1tr}, url+p) }, h1, "h1"},
		{"go without ALPN", func(t *testing.T, p string) string { return body(t, &http.Client{Transport: noALPN}, url+p) }, h1, "h1"},
		{"curl --http2", func(t *testing.T, p string) string {
			return curl(t, "--http2", "--cacert", caFile, "--resolve", resolve, url+p)
		}, h2, "h2"},
		{"curl --http1.1", func(t *testing.T, p string) string {
			return curl(t, "--http1.1", "--cacert", caFile, "--resolve", resolve, url+p)
		}, h1, "h1"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := `agimo_edge_connections_total{protocol="` + c.proto + `"}`
			before := r.counter(name)
			path := fmt.Sprintf("/%d", i)
			if got, want := c.get(t, path), c.want+path+" body="; got != want {
				t.Errorf("got %q; want %q", got, want)
			}
			if got := r.counter(name); got != before+1 {
				t.Errorf("%s = %d; want %d", name, got, before+1)
			}
		})
	}
}

func TestTLSPlainHTTP(t *testing.T) {
	r, _, _ := tlsRig(t, rigOpts{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Post("http://"+r.addr+"/x", "text/plain", strings.NewReader(strings.Repeat("b", 100000)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || string(b) != plainBody {
		t.Errorf("got %d %q; want 400 %q", resp.StatusCode, b, plainBody)
	}
	if got := curl(t, "-o", "/dev/null", "-w", "%{http_code}", "http://"+r.addr+"/"); got != "400" {
		t.Errorf("curl: got %s; want 400", got)
	}
	if got := r.counter(`agimo_tls_handshake_errors_total{reason="not_tls"}`); got != 2 {
		t.Errorf("handshake errors{not_tls} = %d; want 2", got)
	}
}

// Failed handshakes are counted by reason. Each client waits for the
// edge to close the connection, which it does once it has counted.
func TestTLSHandshakeErrors(t *testing.T) {
	r, edgeCA, _ := tlsRig(t, rigOpts{timeout: 300 * time.Millisecond})
	handshake := func(cfg *tls.Config) func(net.Conn) error {
		return func(c net.Conn) error {
			cfg.ServerName = "a.test"
			return tls.Client(c, cfg).Handshake()
		}
	}
	raw := func(s string, fin bool) func(net.Conn) error {
		return func(c net.Conn) error {
			io.WriteString(c, s)
			if fin {
				c.(*net.TCPConn).CloseWrite()
			}
			return nil
		}
	}
	cases := []struct {
		name   string
		client func(net.Conn) error
		reason string
	}{
		{"TLS 1.1 at most", handshake(&tls.Config{RootCAs: edgeCA.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}), "protocol_version_not_supported"},
		{"unknown ALPN", handshake(&tls.Config{RootCAs: edgeCA.pool, NextProtos: []string{"spdy/3"}}), "no_application_protocol"},
		{"client distrusts the certificate", handshake(&tls.Config{RootCAs: newCA(t, "other").pool}), "bad_certificate"},
		{"client distrusts the certificate, alert in the clear", func(c net.Conn) error {
			return handshake(&tls.Config{RootCAs: newCA(t, "other").pool})(&clearAlertConn{Conn: c})
		}, "unknown_certificate_authority"},
		{"empty ClientHello", raw("\x16\x03\x01\x00\x04\x01\x00\x00\x00", false), "error_decoding_message"},
		{"handshake message too long", raw("\x16\x03\x01\x00\x05hello", false), "internal_error"},
		{"silent after a record header", raw("\x16\x03\x01", false), "timeout"},
		{"FIN in the ClientHello", raw("\x16\x03\x01\x01\x00\x01", true), "eof"},
		{"silent", raw("", false), "timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := `agimo_tls_handshake_errors_total{reason="` + c.reason + `"}`
			before := r.counter(name)
			conn, err := net.Dial("tcp", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			if err := c.client(conn); err != nil {
				t.Logf("client: %v", err)
			}
			if _, err := io.Copy(io.Discard, conn); err != nil && !isReset(err) {
				t.Fatalf("read: %v; want the edge to close the connection", err)
			}
			if got := r.counter(name); got != before+1 {
				var b strings.Builder
				r.set.WritePrometheus(&b)
				t.Errorf("%s = %d; want %d\n%s", name, got, before+1, b.String())
			}
		})
	}
}

// clearAlertConn makes crypto/tls's client behave as OpenSSL's (curl's)
// does when it rejects the server's certificate in TLS 1.3: it sends its
// unknown_ca alert in the clear, not encrypted, since it switches to its
// handshake keys only after the server's Finished. Every write after the
// ClientHello is replaced by that alert, sent once, in two writes.
type clearAlertConn struct {
	net.Conn
	writes int
}

func (c *clearAlertConn) Write(b []byte) (int, error) {
	c.writes++
	switch c.writes {
	case 1:
		return c.Conn.Write(b)
	case 2:
		if _, err := c.Conn.Write([]byte{21, 3, 3, 0}); err != nil {
			return 0, err
		}
		if _, err := c.Conn.Write([]byte{2, 2, 48}); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// A passed-through connection reaches the backend unterminated: the
// client verifies the backend's certificate, of a CA the edge does not
// know, and a server name the edge has no certificate for.
func TestTLSPassthrough(t *testing.T) {
	backCA := newCA(t, "backend CA")
	backCert := backCA.leaf(t, "pass.test")
	bln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{backCert}})
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "backend sni=%s path=%s", req.TLS.ServerName, req.URL.Path)
	})}
	served := make(chan struct{})
	go func() { defer close(served); backend.Serve(bln) }()
	t.Cleanup(func() { backend.Close(); <-served })

	r, edgeCA, _ := tlsRig(t, rigOpts{passthrough: map[string]string{"pass.test": bln.Addr().String()}})
	_, port, _ := net.SplitHostPort(r.addr)
	backFile := filepath.Join(t.TempDir(), "backend-ca.pem")
	if err := os.WriteFile(backFile, backCA.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	client := func(pool *tls.Config) (*http.Client, func()) {
		tr := &http.Transport{TLSClientConfig: pool, DialContext: dialTo(r.addr), ForceAttemptHTTP2: true}
		return &http.Client{Transport: tr}, tr.CloseIdleConnections
	}
	back, closeBack := client(&tls.Config{RootCAs: backCA.pool})
	defer closeBack()
	if got, want := body(t, back, "https://pass.test:"+port+"/p"), "backend sni=pass.test path=/p"; got != want {
		t.Errorf("go: got %q; want %q", got, want)
	}
	if got, want := curl(t, "--cacert", backFile, "--resolve", "pass.test:"+port+":127.0.0.1", "https://pass.test:"+port+"/c"), "backend sni=pass.test path=/c"; got != want {
		t.Errorf("curl: got %q; want %q", got, want)
	}
	if got := r.counter(`agimo_edge_connections_total{protocol="passthrough"}`); got != 2 {
		t.Errorf("passthrough connections = %d; want 2", got)
	}
	// Another name is terminated by the edge, with its own certificate.
	edge, closeEdge := client(&tls.Config{RootCAs: edgeCA.pool})
	defer closeEdge()
	if got, want := body(t, edge, "https://a.test:"+port+"/t"), "h2 proto=HTTP/2.0 tls=true host=a.test:"+port+" path=/t body="; got != want {
		t.Errorf("terminated: got %q; want %q", got, want)
	}
	// And the edge's certificate is not the backend's.
	if _, err := edge.Get("https://pass.test:" + port + "/x"); err == nil || !errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Errorf("pass.test verified against the edge's CA: %v; want a certificate verification error", err)
	}
}

// byteConn writes one byte at a time: a ClientHello in many segments.
type byteConn struct{ net.Conn }

func (c byteConn) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := c.Conn.Write(b[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// The ClientHello is read back whole to the terminating handshake however
// it arrives, and TLS() is asked per handshake, so a rotated certificate
// serves the next one.
func TestTLSHandshakes(t *testing.T) {
	first := newCA(t, "first CA")
	cert := first.leaf(t, "a.test")
	second := newCA(t, "second CA")
	rotated := second.leaf(t, "a.test")
	r := newRig(t, rigOpts{tls: true, cert: &cert, rotate: &rotated})
	for i, pool := range []*x509.CertPool{first.pool, second.pool} {
		conn, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		tc := tls.Client(byteConn{conn}, &tls.Config{ServerName: "a.test", RootCAs: pool, NextProtos: []string{"http/1.1"}})
		if _, err := io.WriteString(tc, "GET /"+strconv.Itoa(i)+" HTTP/1.1\r\nHost: a.test\r\n\r\n"); err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "h1 tls=true conn=*tls.Conn host=a.test path=/" + strconv.Itoa(i) + " body="; string(b) != want {
			t.Errorf("handshake %d: got %q; want %q", i, b, want)
		}
	}
}
