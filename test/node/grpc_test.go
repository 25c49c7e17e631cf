//go:build node

package node

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// TestGRPCApp: the gRPC test app's image runs on the node, passes Kubernetes' gRPC
// readiness probe, and answers unary and bidirectional calls through its Service's
// ClusterIP (h2c), so the edge's gRPC tests have a real pod to wake.
func TestGRPCApp(t *testing.T) {
	grpcApp(t, "grpcapp", "grpcapp")
	kubectl(t, "scale", "-n", "grpcapp", "deployment/grpcapp", "--replicas=1")
	kubectl(t, "rollout", "status", "-n", "grpcapp", "deployment/grpcapp", "--timeout=90s")
	ip := clusterIP(t, "grpcapp", "grpcapp")
	conn, err := grpc.NewClient(ip+":80", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// kube-proxy routes a new endpoint a little after the pod is Ready: wait for the first
	// answer, then check the rest at once.
	hc := healthpb.NewHealthClient(conn)
	waitFor(t, 30*time.Second, "gRPC health SERVING through "+ip, func() (bool, error) {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING, err
	})

	tc := testgrpc.NewTestServiceClient(conn)
	u, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
	if err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	if !strings.HasPrefix(u.GetHostname(), "grpcapp-") || string(u.GetPayload().GetBody()) != "ping" {
		t.Errorf("UnaryCall = hostname %q payload %q; want a grpcapp pod echoing ping", u.GetHostname(), u.GetPayload().GetBody())
	}

	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall: %v", err)
	}
	for i := range 3 {
		msg := fmt.Sprintf("m%d", i)
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
			t.Fatalf("send %s: %v", msg, err)
		}
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv %s: %v", msg, err)
		}
		if got := string(r.GetPayload().GetBody()); !strings.HasSuffix(got, msg) || (i == 0) != strings.HasPrefix(got, "grpcapp-") {
			t.Errorf("echo %d = %q; want %q (the first prefixed with the pod's name)", i, got, msg)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("after CloseSend: %v; want io.EOF (status OK)", err)
	}
}
