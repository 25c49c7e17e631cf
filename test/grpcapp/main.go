// Command grpcapp is the test suites' gRPC app: grpc-go's standard test
// service (grpc.testing.TestService: unary, server-streaming,
// client-streaming and bidirectional calls) and the standard health
// service, which Kubernetes' gRPC readiness probe calls. Every answer names
// the pod, so a test can tell which endpoint served a call that went
// through a proxy. Built into an image by hack/node/images.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve gRPC (h2c) on")
	name := flag.String("name", "grpcapp", "name put in every answer (the pod's)")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, &testService{name: *name})
	hs := health.NewServer() // "" (the server as a whole): SERVING
	healthpb.RegisterHealthServer(srv, hs)
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		hs.Shutdown() // NOT_SERVING first, as a pod that is going away should
		srv.GracefulStop()
	}()
	if err := srv.Serve(ln); err != nil {
		log.Fatal(err)
	}
}

// testService answers with its name and echoes payloads back.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (s *testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// UnaryCall echoes the request's payload, with the pod's name as Hostname.
func (s *testService) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: in.GetPayload(), Hostname: s.name}, nil
}

// StreamingOutputCall sends one response per requested parameter, each a
// payload of the requested size.
func (s *testService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range in.GetResponseParameters() {
		body := make([]byte, p.GetSize())
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

// StreamingInputCall sums the sizes of the payloads sent.
func (s *testService) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	var n int32
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(in.GetPayload().GetBody()))
	}
}

// FullDuplexCall echoes each message's payload as it arrives, prefixed by
// the pod's name on the first.
func (s *testService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for first := true; ; first = false {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		body := in.GetPayload().GetBody()
		if first {
			body = append([]byte(s.name+":"), body...)
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
}
