package load

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// GRPCPayload is the size of each unary call's request and response
// payload: the size of http-small's body.
const GRPCPayload = 13

// GRPC runs gRPC unary load: each worker owns one ClientConn (one HTTP/2
// connection, h2c for an http:// target, TLS for https://) and calls
// grpc.testing.TestService/UnaryCall back to back, or paced by cfg.Rate,
// with the :authority set to Host. An op is one call that ended with
// status OK.
func GRPC(ctx context.Context, cfg Config) (*Result, error) {
	cfg.Mode = ModeGRPC
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %q: want http://host:port (h2c) or https://host:port", cfg.URL)
	}
	if cfg.Host == "" {
		cfg.Host = u.Host
	}
	creds := insecure.NewCredentials()
	if u.Scheme == "https" {
		tc, err := clientTLS(&cfg)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	req := &testpb.SimpleRequest{ResponseSize: GRPCPayload, Payload: &testpb.Payload{Body: make([]byte, GRPCPayload)}}
	return run(ctx, &cfg, func(ctx context.Context, c *clock, w *worker) {
		// passthrough: the address as it is, no resolver in the way.
		cc, err := grpc.NewClient("passthrough:///"+u.Host, grpc.WithTransportCredentials(creds), grpc.WithAuthority(cfg.Host))
		if err != nil {
			w.fail(err)
			return
		}
		defer cc.Close()
		cl := testgrpc.NewTestServiceClient(cc)
		pace := newPacer(&cfg, c, w.index)
		for {
			due, ok := pace.wait(ctx)
			if !ok {
				return
			}
			cctx, cancel := context.WithDeadline(ctx, earliest(time.Now().Add(cfg.Timeout), c.end.Add(endGrace)))
			resp, err := cl.UnaryCall(cctx, req)
			cancel()
			done := time.Now()
			if done.After(c.end) || ctx.Err() != nil {
				return
			}
			if !c.measuring(due) {
				continue
			}
			if err != nil {
				w.fail(fmt.Errorf("grpc %s: %s", status.Code(err), status.Convert(err).Message()))
				sleepCtx(ctx, errBackoff)
				continue
			}
			w.bytes += int64(len(resp.GetPayload().GetBody()))
			w.hist.Record(done.Sub(due))
			w.ops.Add(1)
		}
	}), nil
}
