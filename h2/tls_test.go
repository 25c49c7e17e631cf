package h2_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a TLS config with a certificate for names, offering
// h2 by ALPN (RFC 7301).
func selfSigned(t *testing.T, names ...string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{"h2"},
		MinVersion:   tls.VersionTLS12,
	}
}

// curl over TLS, HTTP/2 chosen by ALPN, reaches a cold service; the
// upstream sees X-Forwarded-Proto https.
func TestCurlHTTP2OverTLS(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	h := startHarnessWith(t, oneService, harnessOpts{tls: selfSigned(t, "app.test")})
	up := newH1Upstream(t)
	_, port, _ := net.SplitHostPort(h.addr)
	out := make(chan string, 1)
	go func() {
		b, err := exec.Command("curl", "-sS", "-i", "-k", "--http2", "--max-time", "20",
			"--resolve", "app.test:"+port+":127.0.0.1", "https://app.test:"+port+"/tls").CombinedOutput()
		if err != nil {
			b = append(b, "\ncurl: "+err.Error()...)
		}
		out <- strings.ReplaceAll(string(b), "\r", "")
	}()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", "", true, up.addr())
	got := <-out
	for _, want := range []string{"HTTP/2 201", "hello from h1 HTTP/1.1", "x-checksum: abc123"} {
		if !strings.Contains(got, want) {
			t.Errorf("curl output lacks %q:\n%s", want, got)
		}
	}
	if in := up.got.Load(); in == nil || in.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("upstream X-Forwarded-Proto = %q; want https", in.Header.Get("X-Forwarded-Proto"))
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}
