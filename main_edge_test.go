package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The helpers of the tests that run the whole binary's listeners (run)
// with a certificate: the h2spec conformance run, the headless browser
// and HTTP/1.1 over TLS.

// testCert is a self-signed certificate for the names the edge tests
// use, written as PEM files for tls_cert_file and tls_key_file.
type testCert struct {
	certFile, keyFile string
	cert              *x509.Certificate
}

func newTestCert(t *testing.T, dnsNames []string, ips []net.IP) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: dnsNames[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root, for a client's RootCAs
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &testCert{certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), cert: cert}
	for f, b := range map[string]*pem.Block{
		c.certFile: {Type: "CERTIFICATE", Bytes: der},
		c.keyFile:  {Type: "PRIVATE KEY", Bytes: kder},
	} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// pool is a certificate pool that trusts only c.
func (c *testCert) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// spki is the base64 SHA-256 of c's public key, as Chromium's
// --ignore-certificate-errors-spki-list takes it.
func (c *testCert) spki() string {
	sum := sha256.Sum256(c.cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// agimo is one run of the binary's run in this process.
type agimo struct {
	t                    *testing.T
	port, tlsPort, mport string
	logs                 *syncBuffer
	admin                *http.Client
}

// startAgimo runs Agimo with the config text cfg against the API server
// of kubeconfig, on free loopback ports, until the test ends, when run
// must return nil and leave no goroutine behind; it returns once /readyz
// answers 200.
func startAgimo(t *testing.T, cfg, kubeconfig string) *agimo {
	t.Helper()
	base := settledGoroutines()
	a := &agimo{port: freePort(t), tlsPort: freePort(t), mport: freePort(t), logs: &syncBuffer{},
		admin: &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}}
	ctx, stop := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		result <- run(ctx, []string{
			"--conf", writeFile(t, "agimo.toml", cfg), "--kubeconfig", kubeconfig, "--address", "127.0.0.1",
			"--port", a.port, "--tls-port", a.tlsPort, "--prometheus-exporter-port", a.mport,
			"--drain-delay", "0s", "--shutdown-timeout", "5s", "--log-level", "debug",
		}, io.Discard, a.logs)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-result:
			if err != nil {
				t.Errorf("run returned %v; want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("run did not return 20 s after it was stopped")
		}
		a.admin.CloseIdleConnections()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections() // client-go's
		waitGoroutines(t, base+10)
	})
	a.waitFor(t, "/readyz 200", func() bool {
		select {
		case err := <-result:
			t.Fatalf("run returned %v before it was ready; logs:\n%s", err, a.logs.String())
		default:
		}
		code, _ := a.adminGet("/readyz")
		return code == 200
	})
	return a
}

func (a *agimo) adminGet(path string) (int, string) {
	resp, err := a.admin.Get("http://127.0.0.1:" + a.mport + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls f until it holds, for at most 20 s, and fails t with
// Agimo's log past that.
func (a *agimo) waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !f(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; logs:\n%s", what, a.logs.String())
		}
	}
}

// metric returns the value of the series named exactly series ("" if
// absent).
func (a *agimo) metric(series string) string {
	_, body := a.adminGet("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// metricIs is a condition for waitFor: series has value want.
func (a *agimo) metricIs(series string, want int) func() bool {
	return func() bool { return a.metric(series) == strconv.Itoa(want) }
}
