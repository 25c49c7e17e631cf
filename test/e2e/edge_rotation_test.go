//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Rotation without restart (cert-manager renewing a Secret): the Secret gets a certificate
// from another CA while a client keeps a keep-alive TLS connection open. The open
// connection goes on working with the certificate it was handshaken with; new handshakes
// get the new certificate within seconds; a client trusting only the new CA connects.
func TestTLSCertificateRotation(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	caBefore, caAfter := newCA(t, "CA before"), newCA(t, "CA after")
	before, after := caBefore.issue(t, w.Host()), caAfter.issue(t, w.Host())
	createTLSSecret(t, ns, "web-tls", before)
	pod := startPod(t, "web-rotation")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config("tls_secret = 'web-tls'"), agimoOpts{})
	w.warm(t, pod)

	roots := x509.NewCertPool()
	roots.AddCert(caBefore.cert)
	roots.AddCert(caAfter.cert)
	var dials atomic.Int32
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", a.TLSAddr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
		MaxConnsPerHost: 1,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 90 * time.Second}
	// get sends a request on the kept connection and returns the certificate it was
	// handshaken with.
	get := func(path string) *x509.Certificate {
		t.Helper()
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			"GET", "https://"+w.Host()+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), "pod="+pod.Name+" ") {
			t.Fatalf("GET %s: %d %q %v; want 200 from pod %s", path, resp.StatusCode, b, err, pod.Name)
		}
		if n := dials.Load(); n != 1 || (path != "/first" && !reused) {
			t.Fatalf("GET %s: %d connection(s) dialed, reused %v; want the one kept-alive connection", path, n, reused)
		}
		return resp.TLS.PeerCertificates[0]
	}
	if got := get("/first"); !got.Equal(before.leaf) {
		t.Fatalf("first handshake: certificate serial %v; want %v", got.SerialNumber, before.leaf.SerialNumber)
	}

	s := tlsSecretOf(ns, "web-tls", after)
	if _, err := env.client.CoreV1().Secrets(ns).Update(ctx(t), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	updated := time.Now()
	eventually(t, 10*time.Second, "new handshakes to get the renewed certificate", func() bool {
		return servedCert(t, a.TLSAddr, w.Host()).Equal(after.leaf)
	})
	t.Logf("renewed certificate served to new handshakes %s after the Secret update", time.Since(updated).Round(time.Millisecond))

	if got := get("/after-rotation"); !got.Equal(before.leaf) {
		t.Errorf("kept-alive connection after the rotation: certificate serial %v; want the one it was handshaken with, %v",
			got.SerialNumber, before.leaf.SerialNumber)
	}
	expectCurlFrom(t, curl(append([]string{"--http1.1", "--cacert", caAfter.file(t)}, a.httpsURL(w.Host(), "/new-ca")...)...), pod, "1.1", "https")
	if r := curl(append([]string{"--cacert", caBefore.file(t)}, a.httpsURL(w.Host(), "/old-ca")...)...); r.Err == nil {
		t.Errorf("curl trusting only the old CA after the rotation: %d %q; want a failed verification", r.Status, r.Body)
	}
	// curl (OpenSSL) sends its unknown_ca alert in the clear; Agimo counts it by that name.
	eventually(t, 10*time.Second, "the rejected handshake counted as unknown_certificate_authority", func() bool {
		return a.metric(t, `agimo_tls_handshake_errors_total{reason="unknown_certificate_authority"}`) == 1
	})
	if got, want := a.metric(t, `agimo_tls_certificate_expiry_timestamp_seconds{source="secret:`+ns+`/web-tls"}`),
		float64(after.leaf.NotAfter.Unix()); got != want {
		t.Errorf("agimo_tls_certificate_expiry_timestamp_seconds = %v; want the renewed certificate's NotAfter %v", got, want)
	}
}
