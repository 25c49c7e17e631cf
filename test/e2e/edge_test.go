//go:build e2e

package e2e

import (
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Issue 11, the edge: TLS termination with SNI, HTTP/2 with and without TLS, https_redirect,
// with curl as the client and certificates in Secrets on the real API server.

// Two services at zero, one with a certificate from a kubernetes.io/tls Secret, one from
// files, each under its own CA: curl, trusting only the CA of the host it asks for, reaches
// each over HTTP/1.1 and HTTP/2 while it is cold (parked, released when the pod is ready),
// so SNI picked the right certificate; the pod sees X-Forwarded-Proto: https. A handshake
// without SNI, or for a name no certificate covers, gets the first configured certificate.
func TestTLSSNICertificates(t *testing.T) {
	ns := newNamespace(t)
	fromSecret := createWorkload(t, ns, "secret-web", "deployment")
	fromFile := createWorkload(t, ns, "file-web", "deployment")
	secretCA, fileCA := newCA(t, "secret CA"), newCA(t, "file CA")
	secretCert, fileCert := secretCA.issue(t, fromSecret.Host()), fileCA.issue(t, fromFile.Host())
	createTLSSecret(t, ns, "secret-web-tls", secretCert)
	crt, key := writePair(t, fileCert)
	a := startAgimo(t, "timeout = '60s'\n"+fromSecret.Config("tls_secret = 'secret-web-tls'")+
		fromFile.Config(fmt.Sprintf("tls_cert_file = %q", crt), fmt.Sprintf("tls_key_file = %q", key)), agimoOpts{})

	for _, c := range []struct {
		name string
		w    workload
		ca   testCA
		leaf *x509.Certificate
	}{
		{"secret", fromSecret, secretCA, secretCert.leaf},
		{"files", fromFile, fileCA, fileCert.leaf},
	} {
		t.Run(c.name, func(t *testing.T) {
			pod := startPod(t, c.w.Name+"-0")
			cacert := c.ca.file(t)
			h1 := curlAsync(append([]string{"--cacert", cacert, "--http1.1"}, a.httpsURL(c.w.Host(), "/h1")...)...)
			h2 := curlAsync(append([]string{"--cacert", cacert, "--http2"}, a.httpsURL(c.w.Host(), "/h2")...)...)
			a.waitParked(t, c.w.Host(), 2)
			c.w.warm(t, pod)
			expectCurlFrom(t, awaitCurl(t, h1, 30*time.Second), pod, "1.1", "https")
			expectCurlFrom(t, awaitCurl(t, h2, 30*time.Second), pod, "2", "https")
			if got := a.metric(t, series("agimo_requests_total", c.w.Host())); got != 2 {
				t.Errorf("agimo_requests_total = %v; want 2", got)
			}
			if got := servedCert(t, a.TLSAddr, strings.ToUpper(c.w.Host())); !got.Equal(c.leaf) {
				t.Errorf("SNI %s (upper case): served %v; want %v", strings.ToUpper(c.w.Host()), got.DNSNames, c.leaf.DNSNames)
			}
		})
	}
	// The first configured certificate: the first service's tls_secret.
	for _, sni := range []string{"", "nobody." + ns + ".e2e"} {
		if got := servedCert(t, a.TLSAddr, sni); !got.Equal(secretCert.leaf) {
			t.Errorf("SNI %q: served %v; want the first configured certificate %v", sni, got.DNSNames, secretCert.leaf.DNSNames)
		}
	}
	// Plain HTTP sent to the TLS port: 400, saying so.
	_, tport, _ := net.SplitHostPort(a.TLSAddr)
	if r := curl("http://127.0.0.1:" + tport + "/"); r.Err != nil || r.Status != 400 || !strings.Contains(r.Body, "HTTPS") {
		t.Errorf("plain HTTP to the TLS port: %d %v %q; want 400 naming HTTPS", r.Status, r.Err, r.Body)
	}
	if got := a.metric(t, `agimo_tls_handshake_errors_total{reason="not_tls"}`); got != 1 {
		t.Errorf(`agimo_tls_handshake_errors_total{reason="not_tls"} = %v; want 1`, got)
	}
	if got := a.metric(t, `agimo_tls_certificate_errors_total{source="secret:`+ns+`/secret-web-tls"}`); got != 0 {
		t.Errorf("agimo_tls_certificate_errors_total for the Secret = %v; want 0", got)
	}
}

// curl --http2-prior-knowledge on the plain port (h2c): a request for a cold service parks,
// and is released by the readiness event like an HTTP/1.1 one.
func TestH2CPriorKnowledgeCold(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	pod := startPod(t, "web-h2c")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config(), agimoOpts{})

	parked := curlAsync(append([]string{"--http2-prior-knowledge"}, a.httpURL(w.Host(), "/h2c")...)...)
	a.waitParked(t, w.Host(), 1)
	w.warm(t, pod)
	r := awaitCurl(t, parked, 30*time.Second)
	expectCurlFrom(t, r, pod, "2", "http")
	if !strings.Contains(r.Body, "path=/h2c ") {
		t.Errorf("pod saw %q; want path /h2c", r.Body)
	}
	for name, want := range map[string]float64{
		"agimo_requests_total": 1, "agimo_parked_requests": 0, "agimo_active_requests": 0, "agimo_park_duration_seconds_count": 1,
	} {
		if got := a.metric(t, series(name, w.Host())); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
	// Warm: straight through, on a connection that is h2c from its first byte.
	expectCurlFrom(t, curl(append([]string{"--http2-prior-knowledge"}, a.httpURL(w.Host(), "/warm")...)...), pod, "2", "http")
	if got := a.metric(t, series("agimo_requests_total", w.Host())); got != 2 {
		t.Errorf("agimo_requests_total = %v after a warm request; want 2", got)
	}
}

// https_redirect = true: plain HTTP (HTTP/1.1 and h2c) gets 308 to the https URL, path and
// query kept, not counted as a request and without waking or parking, probes excepted; over
// TLS the service is served.
func TestHTTPSRedirect(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "web", "deployment")
	ca := newCA(t, "redirect CA")
	createTLSSecret(t, ns, "web-tls", ca.issue(t, w.Host()))
	pod := startPod(t, "web-redirect")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config("tls_secret = 'web-tls'", "https_redirect = true",
		"probe_paths = ['/healthz']"), agimoOpts{})

	want := "https://" + w.Host() + "/path?q=1"
	for _, proto := range []string{"--http1.1", "--http2-prior-knowledge"} {
		r := curl(append([]string{proto}, a.httpURL(w.Host(), "/path?q=1")...)...)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.Status != 308 || r.Location != want {
			t.Errorf("plain HTTP (%s) to a redirect service: %d to %q; want 308 to %q", proto, r.Status, r.Location, want)
		}
	}
	// A probe on plain HTTP is not redirected: Agimo answers it for the cold service.
	if r := curl(a.httpURL(w.Host(), "/healthz")...); r.Err != nil || r.Status != 200 {
		t.Errorf("probe on plain HTTP: %d %v %q; want 200", r.Status, r.Err, r.Body)
	}
	if got := a.metric(t, series("agimo_requests_total", w.Host())); got != 0 {
		t.Errorf("agimo_requests_total = %v after redirects and a probe; want 0", got)
	}
	w.warm(t, pod)
	cacert := ca.file(t)
	for proto, version := range map[string]string{"--http1.1": "1.1", "--http2": "2"} {
		expectCurlFrom(t, curl(append([]string{"--cacert", cacert, proto}, a.httpsURL(w.Host(), "/over-tls")...)...), pod, version, "https")
	}
	if got := a.metric(t, series("agimo_requests_total", w.Host())); got != 2 {
		t.Errorf("agimo_requests_total = %v after two requests over TLS; want 2", got)
	}
}
