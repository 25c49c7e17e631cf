package main

import (
	"context"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// The gRPC upstream of grpc-unary: grpc-go's standard test service (as
// test/grpcapp serves it), UnaryCall only, answering a payload of the size
// asked (load.GRPCPayload), over h2c.

type grpcUpstream struct {
	testgrpc.UnimplementedTestServiceServer
}

func (grpcUpstream) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func newGRPCUpstream() *grpc.Server {
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, grpcUpstream{})
	return s
}
