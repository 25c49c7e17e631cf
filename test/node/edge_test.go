//go:build node

package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestEdgeWakeFromZero: Agimo installed by helm with a gRPC app (h2c by its Service port's
// appProtocol) and an HTTP app, both `wake = true` and at zero replicas, the HTTP one with a
// kubernetes.io/tls Secret. Through Agimo's Service: a gRPC unary call and a bidirectional
// stream that start at zero are parked, wake the Deployment and complete; an h2c request with
// prior knowledge (curl) is parked, wakes the HTTP app and is answered; after the HTTP app is
// scaled back to zero, an HTTPS request over HTTP/2 on the chart's port 443 wakes it again.
func TestEdgeWakeFromZero(t *testing.T) {
	const (
		rel               = "agimo-edge"
		grpcNS, grpcHost  = "edge-grpc", "grpc.edge.test"
		httpNS, httpHost  = "edge-http", "h2.edge.test"
		secret            = "h2-edge-tls"
		callTimeout       = 60 * time.Second
		answeredByGRPCPod = "grpcapp-"
	)
	grpcApp(t, grpcNS, "grpcapp")
	app(t, httpNS, "app")
	caPEM := tlsSecret(t, httpNS, secret, httpHost)
	config := fmt.Sprintf(`timeout = '60s'
[[services]]
host = '%s'
type = 'deployment'
namespace = '%s'
name = 'grpcapp'
service_name = 'grpcapp'
service_port = 80
wake = true

[[services]]
host = '%s'
type = 'deployment'
namespace = '%s'
name = 'app'
service_name = 'app'
service_port = 80
wake = true
tls_secret = '%s'
`, grpcHost, grpcNS, httpHost, httpNS, secret)
	install(t, rel, rel, false, configValues(t, config))
	ip := clusterIP(t, rel, rel)
	waitRouted(t, ip)

	t.Run("grpc", func(t *testing.T) {
		wantReplicas(t, grpcNS, "grpcapp", 0)
		conn, err := grpc.NewClient(ip+":80", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithAuthority(grpcHost))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc := testgrpc.NewTestServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()

		// Both calls start at zero replicas; each reports when it was answered.
		type answer struct {
			what string
			took time.Duration
			err  error
		}
		answers := make(chan answer, 2)
		start := time.Now()
		go func() {
			u, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
			if err == nil && (!strings.HasPrefix(u.GetHostname(), answeredByGRPCPod) || string(u.GetPayload().GetBody()) != "ping") {
				err = fmt.Errorf("got hostname %q payload %q; want a grpcapp pod echoing ping", u.GetHostname(), u.GetPayload().GetBody())
			}
			answers <- answer{"unary call", time.Since(start), err}
		}()
		go func() {
			took, err := fullDuplex(ctx, tc, start)
			answers <- answer{"full-duplex call (first echo)", took, err}
		}()
		for range 2 {
			a := <-answers
			if a.err != nil {
				t.Errorf("%s: %v", a.what, a.err)
				continue
			}
			t.Logf("gRPC %s started at zero replicas, answered in %s (wake = true, real pod, through agimo's ClusterIP)", a.what, a.took.Round(time.Millisecond))
		}
		wantReplicas(t, grpcNS, "grpcapp", 1)
		if w := metric(t, rel, rel, "agimo_wakeups_total", grpcHost); w != 1 {
			t.Errorf("agimo_wakeups_total{host=%q} = %v; want 1", grpcHost, w)
		}
		// Both calls were parked and released: the proof that they started at zero.
		if n := metric(t, rel, rel, "agimo_park_duration_seconds_count", grpcHost); n != 2 {
			t.Errorf("agimo_park_duration_seconds_count{host=%q} = %v; want 2 (both calls parked)", grpcHost, n)
		}
		logPhases(t, "gRPC, wake = true", coldStarts(t, rel, rel, grpcHost))
	})

	t.Run("h2c", func(t *testing.T) {
		wantReplicas(t, httpNS, "app", 0)
		start := time.Now()
		out := curl(t, "--http2-prior-knowledge", "--resolve", httpHost+":80:"+ip, "http://"+httpHost+"/h2c")
		took := time.Since(start)
		checkCurl(t, out, "/h2c")
		t.Logf("curl --http2-prior-knowledge at zero replicas answered in %s (wake = true, real pod)", took.Round(time.Millisecond))
		wantReplicas(t, httpNS, "app", 1)
		if w := metric(t, rel, rel, "agimo_wakeups_total", httpHost); w != 1 {
			t.Errorf("agimo_wakeups_total{host=%q} = %v; want 1", httpHost, w)
		}
		if n := metric(t, rel, rel, "agimo_park_duration_seconds_count", httpHost); n != 1 {
			t.Errorf("agimo_park_duration_seconds_count{host=%q} = %v; want 1 (parked)", httpHost, n)
		}
		logPhases(t, "h2c prior knowledge, wake = true", coldStarts(t, rel, rel, httpHost))
	})

	t.Run("tls", func(t *testing.T) {
		kubectl(t, "scale", "-n", httpNS, "deployment/app", "--replicas=0")
		waitCold(t, httpNS, "app")
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out := curl(t, "--http2", "--cacert", ca, "--resolve", httpHost+":443:"+ip, "https://"+httpHost+"/tls")
		took := time.Since(start)
		checkCurl(t, out, "/tls")
		t.Logf("curl --http2 https://%s (port 443, ALPN h2) at zero replicas answered in %s (wake = true, real pod)", httpHost, took.Round(time.Millisecond))
		wantReplicas(t, httpNS, "app", 1)
		if w := metric(t, rel, rel, "agimo_wakeups_total", httpHost); w != 2 {
			t.Errorf("agimo_wakeups_total{host=%q} = %v; want 2", httpHost, w)
		}
		if n := metric(t, rel, rel, "agimo_park_duration_seconds_count", httpHost); n != 2 {
			t.Errorf("agimo_park_duration_seconds_count{host=%q} = %v; want 2 (parked again)", httpHost, n)
		}
		logPhases(t, "HTTPS h2, wake = true, 2 cold starts", coldStarts(t, rel, rel, httpHost))
	})
}

// fullDuplex opens a bidirectional stream, sends three messages one at a time and checks
// their echoes; it returns the time from start to the first echo.
func fullDuplex(ctx context.Context, tc testgrpc.TestServiceClient, start time.Time) (time.Duration, error) {
	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		return 0, fmt.Errorf("FullDuplexCall: %w", err)
	}
	var first time.Duration
	for i := range 3 {
		msg := fmt.Sprintf("m%d", i)
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
			return 0, fmt.Errorf("send %s: %w", msg, err)
		}
		r, err := stream.Recv()
		if err != nil {
			return 0, fmt.Errorf("recv %s: %w", msg, err)
		}
		if i == 0 {
			first = time.Since(start)
		}
		if got := string(r.GetPayload().GetBody()); !strings.HasSuffix(got, msg) || (i == 0) != strings.HasPrefix(got, "grpcapp-") {
			return 0, fmt.Errorf("echo %d = %q; want %q (the first prefixed with the pod's name)", i, got, msg)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return 0, err
	}
	if _, err := stream.Recv(); err != io.EOF {
		return 0, fmt.Errorf("after CloseSend: %v; want io.EOF (status OK)", err)
	}
	return first, nil
}

// curl runs curl with args, printing the body then a last line "<status> <http_version>".
func curl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args = append([]string{"-sS", "--max-time", "60", "-w", "\n%{http_code} %{http_version}"}, args...)
	out, err := run(ctx, "curl", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkCurl checks curl's output: 200 over HTTP/2 from a pod of app, for path.
func checkCurl(t *testing.T, out, path string) {
	t.Helper()
	i := strings.LastIndexByte(out, '\n')
	body, status := out[:max(i, 0)], out[i+1:]
	if status != "200 2" || !strings.HasPrefix(body, "pod=app-") || !strings.Contains(body, "path="+path) {
		t.Fatalf("got status and version %q, body %q; want \"200 2\" from a pod of app for %s", status, body, path)
	}
}

// wantReplicas checks Deployment name's spec replicas in ns.
func wantReplicas(t *testing.T, ns, name string, want int32) {
	t.Helper()
	d, err := replicas(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != want {
		t.Fatalf("%s/%s spec.replicas = %v; want %d", ns, name, d.Spec.Replicas, want)
	}
}

// waitCold waits until Deployment name in ns has no pod left and its Service's
// EndpointSlices no ready endpoint, so that the next request finds it cold.
func waitCold(t *testing.T, ns, name string) {
	t.Helper()
	waitFor(t, 90*time.Second, ns+"/"+name+" cold (no pod, no ready endpoint)", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil || len(pods.Items) > 0 {
			return false, err
		}
		slices, err := env.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			return false, err
		}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					return false, nil
				}
			}
		}
		return true, nil
	})
}

// tlsSecret creates kubernetes.io/tls Secret name in ns holding a certificate for host,
// issued by a CA made for the test; it returns the CA's certificate (PEM).
func tlsSecret(t *testing.T, ns, name, host string) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agimo node e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := env.client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}
