//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// grpcClient is a grpc-go client of test/grpcapp's TestService through agimo at addr, with
// :authority host (Agimo routes by it).
func grpcClient(t *testing.T, addr, host string, creds credentials.TransportCredentials) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds), grpc.WithAuthority(host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// gRPC end to end (issue 11): a unary and a bidirectional-streaming call to a service at
// zero, both parked and released when the pod (test/grpcapp, h2c) is ready. The Service
// port says appProtocol kubernetes.io/h2c and the service's protocol is the default "auto",
// so the calls only work if the EndpointSlice's appProtocol reached Agimo. Then the same
// over TLS (ALPN h2); and a call to a service that stays cold gets UNAVAILABLE, a gRPC
// status naming the service, after the service's timeout.
func TestGRPCCold(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "grpc", "deployment").withAppProtocol(t, "kubernetes.io/h2c")
	cold := createWorkload(t, ns, "cold", "deployment").withAppProtocol(t, "kubernetes.io/h2c")
	slow := createWorkload(t, ns, "slow", "deployment").withAppProtocol(t, "kubernetes.io/h2c")
	ca := newCA(t, "grpc CA")
	createTLSSecret(t, ns, "grpc-tls", ca.issue(t, w.Host()))
	pod := startPodWith(t, "grpc-0", env.grpcapp)
	a := startAgimo(t, "timeout = '60s'\n"+w.Config("tls_secret = 'grpc-tls'")+cold.Config("timeout = '2s'")+slow.Config(), agimoOpts{})
	client := grpcClient(t, a.ProxyAddr, w.Host(), insecure.NewCredentials())
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	type unaryResult struct {
		r   *testpb.SimpleResponse
		err error
	}
	unary := make(chan unaryResult, 1)
	go func() {
		r, err := client.UnaryCall(c, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
		unary <- unaryResult{r, err}
	}()
	stream, err := client.FullDuplexCall(c)
	if err != nil {
		t.Fatalf("FullDuplexCall: %v", err)
	}
	// exchange sends msg on the stream and returns the echo, read on another goroutine so
	// that a stuck stream fails the test instead of hanging it.
	exchange := func(msg string) string {
		t.Helper()
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
			t.Fatalf("Send %q: %v", msg, err)
		}
		type recv struct {
			m   *testpb.StreamingOutputCallResponse
			err error
		}
		ch := make(chan recv, 1)
		go func() { m, err := stream.Recv(); ch <- recv{m, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("Recv after %q: %v", msg, r.err)
			}
			return string(r.m.GetPayload().GetBody())
		case <-time.After(60 * time.Second):
			t.Fatalf("no echo of %q within 60s", msg)
			return ""
		}
	}
	first := make(chan string, 1)
	go func() { first <- firstEcho(stream) }()
	a.waitParked(t, w.Host(), 2)
	w.warm(t, pod)

	select {
	case u := <-unary:
		if u.err != nil {
			t.Fatalf("UnaryCall to a cold service: %v", u.err)
		}
		if u.r.GetHostname() != pod.Name || string(u.r.GetPayload().GetBody()) != "ping" {
			t.Errorf("UnaryCall = hostname %q payload %q; want %s echoing ping", u.r.GetHostname(), u.r.GetPayload().GetBody(), pod.Name)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("UnaryCall not released within 60s of the pod being ready")
	}
	select {
	case got := <-first:
		if want := pod.Name + ":m0"; got != want {
			t.Fatalf("first echo on the stream %q; want %q", got, want)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("bidirectional stream not released within 60s of the pod being ready")
	}
	for _, msg := range []string{"m1", "m2"} {
		if got := exchange(msg); got != msg {
			t.Errorf("echo %q; want %q", got, msg)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after CloseSend: %v; want io.EOF (status OK in the trailers)", err)
	}
	if got := a.metric(t, series("agimo_requests_total", w.Host())); got != 2 {
		t.Errorf("agimo_requests_total = %v; want 2 (two calls)", got)
	}

	t.Run("tls", func(t *testing.T) {
		creds := credentials.NewTLS(&tls.Config{RootCAs: ca.pool(), ServerName: w.Host()})
		r, err := grpcClient(t, a.TLSAddr, w.Host(), creds).UnaryCall(c, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("tls")}})
		if err != nil || r.GetHostname() != pod.Name {
			t.Fatalf("UnaryCall over TLS: %v %v; want an answer from %s", r, err, pod.Name)
		}
	})

	t.Run("stays cold", func(t *testing.T) {
		start := time.Now()
		_, err := grpcClient(t, a.ProxyAddr, cold.Host(), insecure.NewCredentials()).UnaryCall(c, &testpb.SimpleRequest{})
		s := status.Convert(err)
		if s.Code() != codes.Unavailable || !strings.Contains(s.Message(), cold.Host()) {
			t.Fatalf("call to a service that stays cold: %v; want UNAVAILABLE with a message naming %s", err, cold.Host())
		}
		took := time.Since(start)
		t.Logf("cold call refused after %s: %s", took.Round(time.Millisecond), s.Message())
		if took < 2*time.Second {
			t.Errorf("refused after %s; want the service's timeout (2s) spent parked first", took)
		}
		if got := a.metric(t, series("agimo_park_timeouts_total", cold.Host())); got != 1 {
			t.Errorf("agimo_park_timeouts_total = %v; want 1", got)
		}
	})

	// The client's deadline (grpc-timeout) is shorter than the service's 60s timeout: the
	// call ends with it, and nothing stays parked or active.
	t.Run("client deadline", func(t *testing.T) {
		short, cancel := context.WithTimeout(c, time.Second)
		defer cancel()
		_, err := grpcClient(t, a.ProxyAddr, slow.Host(), insecure.NewCredentials()).UnaryCall(short, &testpb.SimpleRequest{})
		if code := status.Code(err); code != codes.DeadlineExceeded {
			t.Fatalf("call with a 1s deadline to a cold service: %v; want DEADLINE_EXCEEDED", err)
		}
		eventually(t, 10*time.Second, "the call to leave the park", func() bool {
			return a.metric(t, series("agimo_parked_requests", slow.Host())) == 0 && a.metric(t, series("agimo_active_requests", slow.Host())) == 0
		})
	})
}

// firstEcho sends m0 on a fresh stream and returns the first answer ("" on error).
func firstEcho(stream testgrpc.TestService_FullDuplexCallClient) string {
	if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("m0")}}); err != nil {
		return fmt.Sprintf("Send: %v", err)
	}
	m, err := stream.Recv()
	if err != nil {
		return fmt.Sprintf("Recv: %v", err)
	}
	return string(m.GetPayload().GetBody())
}

// SIGTERM while a gRPC call and an h2c request are parked on a cold service: Agimo answers
// both before it exits, the call with UNAVAILABLE saying Agimo is shutting down (a status
// the client can retry elsewhere, not a transport error) and the request with 503.
func TestH2ParkedAtShutdown(t *testing.T) {
	ns := newNamespace(t)
	w := createWorkload(t, ns, "grpc", "deployment").withAppProtocol(t, "kubernetes.io/h2c")
	a := startAgimo(t, "timeout = '60s'\n"+w.Config(), agimoOpts{})
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	call := make(chan error, 1)
	go func() {
		_, err := grpcClient(t, a.ProxyAddr, w.Host(), insecure.NewCredentials()).UnaryCall(c, &testpb.SimpleRequest{})
		call <- err
	}()
	req := curlAsync(append([]string{"--http2-prior-knowledge"}, a.httpURL(w.Host(), "/parked")...)...)
	a.waitParked(t, w.Host(), 2)
	a.stop(t)
	select {
	case err := <-call:
		if s := status.Convert(err); s.Code() != codes.Unavailable || !strings.Contains(s.Message(), "shutting down") {
			t.Errorf("parked call at shutdown: %v; want UNAVAILABLE saying agimo is shutting down", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("parked call not answered at shutdown")
	}
	if r := awaitCurl(t, req, 30*time.Second); r.Err != nil || r.Status != 503 || r.Version != "2" {
		t.Errorf("parked h2c request at shutdown: %d over HTTP/%s %v %q; want 503 over HTTP/2", r.Status, r.Version, r.Err, r.Body)
	}
	if a.exitErr != nil {
		t.Errorf("agimo exited with %v; want a clean exit", a.exitErr)
	}
}
