package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pool is the tests' usual pool: services[0] a.example.com with a
// Secret, services[1] b.example.com with files, a shared wildcard.
type pool struct {
	*rig
	ca         *testCA
	a, b, wild leaf
	dir        string
	addr       string // a TLS server using the Store's config
}

func newPool(t *testing.T) *pool {
	t.Helper()
	p := &pool{ca: newCA(t), dir: t.TempDir()}
	p.a = p.ca.issue(t, "a.example.com")
	p.b = p.ca.issue(t, "b.example.com")
	p.wild = p.ca.issue(t, "*.example.com")
	crt, key := writePair(t, p.dir, "b", p.b)
	src := "tls_secrets = [\"shared/wild\"]\n" +
		service("a.example.com", `tls_secret = "a-tls"`) +
		service("b.example.com", fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q", crt, key))
	p.rig = newRig(t, src, tlsSecret("apps", "a-tls", p.a), tlsSecret("shared", "wild", p.wild))
	p.addr = echoServer(t, p.st.TLSConfig())
	return p
}

// The ClientHello's SNI picks the certificate: exact name, then wildcard
// (one label), case-insensitively; without SNI or for an unknown name,
// the first configured (services[0]'s Secret).
func TestSNIPicksCertificate(t *testing.T) {
	p := newPool(t)
	if !p.st.Enabled() {
		t.Fatal("Enabled() = false; want true")
	}
	tests := []struct {
		sni  string
		want leaf
	}{
		{"a.example.com", p.a},    // from a Secret
		{"b.example.com", p.b},    // from files
		{"B.Example.COM", p.b},    // case-insensitive
		{"c.example.com", p.wild}, // wildcard
		{"x.y.example.com", p.a},  // a wildcard covers one label only
		{"example.com", p.a},      // nor the bare domain
		{"", p.a},                 // no SNI
		{"unknown.test", p.a},     // no certificate covers it
	}
	for _, tt := range tests {
		t.Run(tt.sni, func(t *testing.T) {
			c := dialTLS(t, p.addr, tt.sni, "h2", "http/1.1")
			if got := servedSerial(c); got != tt.want.serial {
				t.Errorf("SNI %q: got certificate %d; want %d", tt.sni, got, tt.want.serial)
			}
			st := c.ConnectionState()
			if st.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN = %q; want h2", st.NegotiatedProtocol)
			}
			if st.Version < tls.VersionTLS12 {
				t.Errorf("version = %x; want TLS 1.2 or later", st.Version)
			}
		})
	}
	// And a client that verifies accepts what it gets for a covered name.
	c, err := tls.Dial("tcp", p.addr, &tls.Config{ServerName: "c.example.com", RootCAs: p.ca.pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("verifying client: %v", err)
	}
	defer c.Close()
	if got := c.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
		t.Errorf("ALPN = %q; want http/1.1", got)
	}
}

// The exact name wins over a wildcard configured before it.
func TestExactBeatsEarlierWildcard(t *testing.T) {
	ca := newCA(t)
	wild, exact := ca.issue(t, "*.example.com"), ca.issue(t, "a.example.com")
	certs := make([]*tls.Certificate, 2)
	for i, l := range []leaf{wild, exact} {
		c, err := parsePair(l.certPEM, l.keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		certs[i] = c
	}
	snap := buildSnapshot(certs, 2)
	tests := []struct {
		sni  string
		want leaf
	}{
		{"a.example.com", exact},
		{"a.example.com.", exact},
		{"b.example.com", wild},
		{"", wild},
	}
	for _, tt := range tests {
		if got := snap.pick(tt.sni).Leaf.SerialNumber.Int64(); got != tt.want.serial {
			t.Errorf("pick(%q) = certificate %d; want %d", tt.sni, got, tt.want.serial)
		}
	}
}

// A Secret update reaches new handshakes; a connection made before keeps
// its certificate and keeps working. The expiry gauge follows.
func TestSecretRotation(t *testing.T) {
	p := newPool(t)
	old := dialTLS(t, p.addr, "a.example.com")
	if got := servedSerial(old); got != p.a.serial {
		t.Fatalf("before rotation: got certificate %d; want %d", got, p.a.serial)
	}
	gauge := `agimo_tls_certificate_expiry_timestamp_seconds{source="secret:apps/a-tls"}`
	if got, want := p.metric(gauge), strconv.FormatInt(p.a.notAfter.Unix(), 10); got != want {
		t.Errorf("%s = %s; want %s", gauge, got, want)
	}
	p.waitWatch("a-tls")
	renewed := p.ca.issue(t, "a.example.com")
	p.updateSecret(t, tlsSecret("apps", "a-tls", renewed))
	if err := p.waitOutcome(t, "secret:apps/a-tls", false); err != nil {
		t.Fatalf("renewed Secret rejected: %v", err)
	}
	if got := servedSerial(dialTLS(t, p.addr, "a.example.com")); got != renewed.serial {
		t.Errorf("after rotation: got certificate %d; want %d", got, renewed.serial)
	}
	echo(t, old, "still here")
	if got := servedSerial(old); got != p.a.serial {
		t.Errorf("old connection's certificate = %d; want %d", got, p.a.serial)
	}
	if got, want := p.metric(gauge), strconv.FormatInt(renewed.notAfter.Unix(), 10); got != want {
		t.Errorf("%s = %s; want %s", gauge, got, want)
	}
}

// A broken Secret is logged and counted, and the previous certificate
// keeps serving; a good one afterwards is served again.
func TestBadSecretKeepsPrevious(t *testing.T) {
	p := newPool(t)
	p.waitWatch("a-tls")
	other := p.ca.issue(t, "a.example.com")
	tests := []struct {
		name   string
		secret func() *corev1.Secret
	}{
		{"key of another certificate", func() *corev1.Secret {
			s := tlsSecret("apps", "a-tls", p.a)
			s.Data[corev1.TLSPrivateKeyKey] = other.keyPEM
			return s
		}},
		{"wrong type", func() *corev1.Secret {
			s := tlsSecret("apps", "a-tls", other)
			s.Type = corev1.SecretTypeOpaque
			return s
		}},
		{"no tls.key", func() *corev1.Secret {
			s := tlsSecret("apps", "a-tls", other)
			delete(s.Data, corev1.TLSPrivateKeyKey)
			return s
		}},
		{"not PEM", func() *corev1.Secret {
			s := tlsSecret("apps", "a-tls", other)
			s.Data[corev1.TLSCertKey] = []byte("-----BEGIN NOTHING-----")
			return s
		}},
	}
	counter := `agimo_tls_certificate_errors_total{source="secret:apps/a-tls"}`
	if got := p.metric(counter); got != "0" {
		t.Fatalf("%s = %q before any error; want 0", counter, got)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.updateSecret(t, tt.secret())
			if err := p.waitOutcome(t, "secret:apps/a-tls", false); err == nil {
				t.Fatal("broken Secret accepted")
			}
			if got, want := p.metric(counter), strconv.Itoa(i+1); got != want {
				t.Errorf("%s = %s; want %s", counter, got, want)
			}
			if got := servedSerial(dialTLS(t, p.addr, "a.example.com")); got != p.a.serial {
				t.Errorf("got certificate %d; want the previous one, %d", got, p.a.serial)
			}
		})
	}
	p.updateSecret(t, tlsSecret("apps", "a-tls", other))
	if err := p.waitOutcome(t, "secret:apps/a-tls", false); err != nil {
		t.Fatalf("good Secret rejected: %v", err)
	}
	if got := servedSerial(dialTLS(t, p.addr, "a.example.com")); got != other.serial {
		t.Errorf("got certificate %d; want %d", got, other.serial)
	}
	// Deleted: counted, and the last certificate still serves.
	if err := p.cs.CoreV1().Secrets("apps").Delete(context.Background(), "a-tls", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := p.waitOutcome(t, "secret:apps/a-tls", false); err == nil {
		t.Fatal("deletion not reported")
	}
	if got := servedSerial(dialTLS(t, p.addr, "a.example.com")); got != other.serial {
		t.Errorf("after deletion: got certificate %d; want %d", got, other.serial)
	}
}

// A Secret missing at start is reported, Start still succeeds, the other
// certificates serve, and the Secret is served once it is created.
func TestMissingSecretAtStart(t *testing.T) {
	ca := newCA(t)
	a, b := ca.issue(t, "a.example.com"), ca.issue(t, "b.example.com")
	r := newRigUnstarted(t, service("a.example.com", `tls_secret = "a-tls"`)+service("b.example.com", `tls_secret = "b-tls"`),
		tlsSecret("apps", "b-tls", b))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.st.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := r.waitOutcome(t, "secret:apps/a-tls", false); err == nil {
		t.Fatal("missing Secret not reported")
	}
	if got := r.metric(`agimo_tls_certificate_errors_total{source="secret:apps/a-tls"}`); got != "1" {
		t.Errorf("error counter = %q; want 1", got)
	}
	addr := echoServer(t, r.st.TLSConfig())
	if got := servedSerial(dialTLS(t, addr, "a.example.com")); got != b.serial {
		t.Errorf("got certificate %d; want the only one loaded, %d", got, b.serial)
	}
	r.waitWatch("a-tls")
	if _, err := r.cs.CoreV1().Secrets("apps").Create(ctx, tlsSecret("apps", "a-tls", a), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.waitOutcome(t, "secret:apps/a-tls", false); err != nil {
		t.Fatalf("created Secret rejected: %v", err)
	}
	if got := servedSerial(dialTLS(t, addr, "a.example.com")); got != a.serial {
		t.Errorf("got certificate %d; want %d", got, a.serial)
	}
}

// Changed files are read again; a half-rotated pair never replaces the
// good one.
func TestFileRotation(t *testing.T) {
	p := newPool(t)
	id := "file:" + p.dir + "/b.crt"
	renewed := p.ca.issue(t, "b.example.com")
	writePair(t, p.dir, "b", renewed)
	if err := p.waitOutcome(t, id, true); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(dialTLS(t, p.addr, "b.example.com")); got != renewed.serial {
		t.Errorf("after rotation: got certificate %d; want %d", got, renewed.serial)
	}
	// A key that does not match: counted, the renewed pair still serves.
	writePair(t, p.dir, "b", leaf{certPEM: renewed.certPEM, keyPEM: p.b.keyPEM})
	if err := p.waitOutcome(t, id, false); err == nil {
		t.Fatal("mismatched pair accepted")
	}
	if got := p.metric(`agimo_tls_certificate_errors_total{source="` + id + `"}`); got == "0" || got == "" {
		t.Errorf("error counter = %q; want at least 1", got)
	}
	if got := servedSerial(dialTLS(t, p.addr, "b.example.com")); got != renewed.serial {
		t.Errorf("after a bad rotation: got certificate %d; want %d", got, renewed.serial)
	}
}

// Every list and watch of a Secret names it with a field selector, so
// RBAC can grant list and watch by resourceNames.
func TestSecretsListedAndWatchedByName(t *testing.T) {
	p := newPool(t)
	p.st.Stop() // no more calls; read what was recorded
	close(p.lists)
	close(p.watches)
	want := map[string]bool{"metadata.name=a-tls": true, "metadata.name=wild": true}
	lists := 0
	for sel := range p.lists {
		lists++
		if !want[sel] {
			t.Errorf("list with field selector %q; want one of %v", sel, want)
		}
	}
	for sel := range p.watches {
		if !want[sel] {
			t.Errorf("watch with field selector %q; want one of %v", sel, want)
		}
	}
	if lists < 2 {
		t.Errorf("%d lists of Secrets; want at least 2", lists)
	}
}
