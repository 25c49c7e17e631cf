//go:build e2e

package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Helpers of the edge tests (issue 11): a test CA issuing server certificates, and curl as
// the client.

// testCA is a throwaway certificate authority; clients trust it by its PEM.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

func newCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue returns a server certificate for names, signed by ca.
func (ca testCA) issue(t *testing.T, names ...string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), leaf}
}

// pool is a root pool with ca alone.
func (ca testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// file writes ca's PEM for curl --cacert.
func (ca testCA) file(t *testing.T) string { return writeTemp(t, string(ca.PEM)) }

// writePair writes c's certificate and key to files, for tls_cert_file/tls_key_file or a pod.
func writePair(t *testing.T, c testCert) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, c.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// curlResult is one curl run: the status, the HTTP version curl used ("1.1", "2"), the
// redirect URL it was given (Location), and the body.
type curlResult struct {
	Status         int
	Version        string
	Location, Body string
	Err            error // curl failed (with its stderr)
}

// curl runs curl with args (never through a proxy from the environment).
func curl(args ...string) curlResult {
	args = append([]string{"-sS", "--noproxy", "*", "--max-time", "90",
		"-w", "\n%{http_code} %{http_version} %{redirect_url}"}, args...)
	cmd := exec.Command("curl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return curlResult{Err: fmt.Errorf("curl %s: %w: %s", strings.Join(args, " "), err, stderr.String())}
	}
	out := stdout.String()
	i := strings.LastIndexByte(out, '\n')
	r := curlResult{Body: out[:max(i, 0)]}
	f := strings.Fields(out[i+1:])
	if len(f) < 2 {
		return curlResult{Err: fmt.Errorf("curl %s: unexpected -w output %q", strings.Join(args, " "), out[i+1:])}
	}
	r.Status, _ = strconv.Atoi(f[0])
	r.Version = f[1]
	if len(f) > 2 {
		r.Location = f[2]
	}
	return r
}

// curlAsync runs curl in the background; receive the result from the channel.
func curlAsync(args ...string) <-chan curlResult {
	ch := make(chan curlResult, 1)
	go func() { ch <- curl(args...) }()
	return ch
}

func awaitCurl(t *testing.T, ch <-chan curlResult, d time.Duration) curlResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("curl: no response within %s", d)
		return curlResult{}
	}
}

// expectCurlFrom fails unless r is a 200 over HTTP version from pod p, which saw
// X-Forwarded-Proto xfp.
func expectCurlFrom(t *testing.T, r curlResult, p *fakePod, version, xfp string) {
	t.Helper()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Status != 200 || r.Version != version || !strings.Contains(r.Body, "pod="+p.Name+" ") {
		t.Fatalf("got %d over HTTP/%s %q; want 200 over HTTP/%s from pod %s", r.Status, r.Version, r.Body, version, p.Name)
	}
	if !strings.Contains(r.Body, " xfp="+xfp+"\n") {
		t.Errorf("pod saw %q; want X-Forwarded-Proto %s", r.Body, xfp)
	}
}

// httpsURL is the URL of path on host at agimo's TLS port, and curl's arguments that
// resolve host there (so that curl sends host as SNI and verifies the certificate for it).
func (a *agimoProc) httpsURL(host, path string) []string {
	_, port, _ := net.SplitHostPort(a.TLSAddr)
	return []string{"--resolve", host + ":" + port + ":127.0.0.1", "https://" + host + ":" + port + path}
}

// httpURL is httpsURL for the plain port.
func (a *agimoProc) httpURL(host, path string) []string {
	_, port, _ := net.SplitHostPort(a.ProxyAddr)
	return []string{"--resolve", host + ":" + port + ":127.0.0.1", "http://" + host + ":" + port + path}
}

// series names host's sample of a per-host metric family.
func series(family, host string) string { return fmt.Sprintf("%s{host=%q}", family, host) }

// warm scales w to one replica whose ready endpoint is p.
func (w workload) warm(t *testing.T, p *fakePod) {
	t.Helper()
	names := w.scale(t, 1)
	w.setEndpoints(t, readyEndpoint(p, names[0]))
}
