package h2_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// startGRPCApp serves grpc-go's standard test service and the health
// service over h2c on a loopback port, as test/grpcapp does in a pod, and
// returns its address.
func startGRPCApp(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, &testService{name: name})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	return ln.Addr().String()
}

// dialGRPC connects a grpc-go client to the front end at addr, every
// call's :authority being authority.
func dialGRPC(t *testing.T, addr, authority string) testgrpc.TestServiceClient {
	t.Helper()
	return testgrpc.NewTestServiceClient(dialGRPCConn(t, addr, authority))
}

func dialGRPCConn(t *testing.T, addr, authority string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// testService is test/grpcapp's: it answers with its name and echoes
// payloads back; a request with a response_status gets that status, and
// every unary answer carries the trailer x-served-by.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (s *testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (s *testService) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-served-by", s.name))
	if st := in.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: in.GetPayload(), Hostname: s.name}, nil
}

func (s *testService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range in.GetResponseParameters() {
		body := make([]byte, p.GetSize())
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

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
// the server's name on the first.
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
