//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agimo/agimo/certs"
	"github.com/agimo/agimo/conf"
)

// The chart lets Agimo read exactly the TLS Secrets its config names (a service's
// tls_secret, tls.secrets), by name, and no other Secret; and that suffices for the
// certificate pool: with the ServiceAccount's token (not admin) it lists and watches each
// Secret by name (field selector metadata.name), serves it, and serves its renewal.
func TestChartRBACTLSSecrets(t *testing.T) {
	for _, mode := range []string{"clusterrole", "namespaced"} {
		t.Run(mode, func(t *testing.T) {
			agimoNS, appNS, certNS := newNamespace(t), newNamespace(t), newNamespace(t)
			release := "agimo-" + agimoNS[len(agimoNS)-4:]
			cfgText := "timeout = '60s'\ntls_secrets = ['" + certNS + "/wild']\n" +
				createWorkload(t, appNS, "web", "deployment").Config("tls_secret = 'web-tls'")
			// The chart takes the shared Secret from tls.secrets and writes tls_secrets itself.
			chartCfg := strings.Replace(cfgText, "tls_secrets = ['"+certNS+"/wild']\n", "", 1)
			args := []string{"--set-file", "config=" + writeTemp(t, chartCfg), "--set-json", `tls.secrets=["` + certNS + `/wild"]`}
			if mode == "namespaced" {
				args = append(args, "--set", "rbac.namespaces={"+appNS+","+certNS+"}")
			}
			installChartRBAC(t, agimoNS, release, args...)
			deadline := time.Now().Add(10 * time.Second)
			for !canISecret(t, agimoNS, release, appNS, "get", "web-tls") && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond) // the authorizer learns new Roles a moment later
			}
			for _, c := range []struct {
				ns, verb, name string
				want           bool
			}{
				{appNS, "get", "web-tls", true},
				{appNS, "list", "web-tls", true},
				{appNS, "watch", "web-tls", true},
				{certNS, "watch", "wild", true},
				{appNS, "list", "", false}, // every Secret of the namespace
				{appNS, "watch", "", false},
				{appNS, "get", "other", false},
				{appNS, "update", "web-tls", false},
				{certNS, "get", "web-tls", false},
				{agimoNS, "list", "", false},
			} {
				if got := canISecret(t, agimoNS, release, c.ns, c.verb, c.name); got != c.want {
					t.Errorf("chart RBAC: %s secrets %q in %s allowed = %v; want %v", c.verb, c.name, c.ns, got, c.want)
				}
			}

			web1, wild := issueCert(t, "web.example.com"), issueCert(t, "*.example.com")
			createTLSSecret(t, appNS, "web-tls", web1)
			createTLSSecret(t, certNS, "wild", wild)
			createTLSSecret(t, appNS, "other", issueCert(t, "other.example.com"))

			rc, err := clientcmd.BuildConfigFromFlags("", tokenKubeconfig(t, agimoNS, release))
			if err != nil {
				t.Fatal(err)
			}
			sa, err := kubernetes.NewForConfig(rc)
			if err != nil {
				t.Fatal(err)
			}
			// The API server itself: by name allowed, all Secrets forbidden.
			if _, err := sa.CoreV1().Secrets(appNS).List(ctx(t), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("list all Secrets as the ServiceAccount: err = %v; want Forbidden", err)
			}
			byName := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "web-tls").String()}
			if l, err := sa.CoreV1().Secrets(appNS).List(ctx(t), byName); err != nil || len(l.Items) != 1 {
				t.Errorf("list Secret web-tls by field selector as the ServiceAccount: err = %v; want 1 item", err)
			}

			cfg, err := conf.Load(writeTemp(t, cfgText))
			if err != nil {
				t.Fatal(err)
			}
			set := metrics.NewSet()
			st, err := certs.New(cfg, sa, certs.Options{Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: set})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Stop()
			if err := st.Start(ctx(t)); err != nil {
				t.Fatalf("Start with the chart's RBAC: %v", err)
			}
			addr := serveTLS(t, st.TLSConfig())
			for sni, want := range map[string]*x509.Certificate{"web.example.com": web1.leaf, "x.example.com": wild.leaf} {
				if got := servedCert(t, addr, sni); !got.Equal(want) {
					t.Errorf("SNI %s: served %v; want %v", sni, got.DNSNames, want.DNSNames)
				}
			}
			web2 := issueCert(t, "web.example.com")
			s := tlsSecretOf(appNS, "web-tls", web2)
			if _, err := env.client.CoreV1().Secrets(appNS).Update(ctx(t), s, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the renewed certificate is served", func() bool {
				return servedCert(t, addr, "web.example.com").Equal(web2.leaf)
			})
			var b strings.Builder
			set.WritePrometheus(&b)
			if !strings.Contains(b.String(), `agimo_watch_errors_total{resource="secrets"} 0`+"\n") {
				t.Errorf("Secret lists or watches failed with the chart's RBAC:\n%s", b.String())
			}
		})
	}
}

func canISecret(t *testing.T, saNS, sa, namespace, verb, name string) bool {
	t.Helper()
	r, err := env.client.AuthorizationV1().SubjectAccessReviews().Create(ctx(t), &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:" + saNS + ":" + sa,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: "secrets", Name: name},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

// testCert is a self-signed certificate and its key, in PEM.
type testCert struct {
	certPEM, keyPEM []byte
	leaf            *x509.Certificate
}

func issueCert(t *testing.T, name string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return testCert{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), leaf}
}

func tlsSecretOf(ns, name string, c testCert) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: c.certPEM, corev1.TLSPrivateKeyKey: c.keyPEM}}
}

func createTLSSecret(t *testing.T, ns, name string, c testCert) {
	t.Helper()
	if _, err := env.client.CoreV1().Secrets(ns).Create(ctx(t), tlsSecretOf(ns, name, c), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// serveTLS accepts TLS connections with cfg on loopback, each closed after its
// handshake, until the test ends.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func servedCert(t *testing.T, addr, sni string) *x509.Certificate {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config: &tls.Config{ServerName: sni, InsecureSkipVerify: true}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("handshake with SNI %s: %v", sni, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0]
}
