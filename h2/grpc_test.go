package h2_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/agimo/agimo/route"
)

const grpcServices = `
timeout = "10s"
[[services]]
host = "grpc.test"
type = "deployment"
namespace = "apps"
name = "grpc"
service_name = "grpc"
service_port = 80

[[services]]
host = "short.test"
type = "deployment"
namespace = "apps"
name = "short"
service_name = "short"
service_port = 80
timeout = "200ms"

[[services]]
host = "one.test"
type = "deployment"
namespace = "apps"
name = "one"
service_name = "one"
service_port = 80
max_parked = 1
`

// A unary call and a bidirectional stream that start while the service
// has no ready endpoint are parked, released when it turns ready, and
// forwarded over h2c (appProtocol kubernetes.io/h2c); then, warm, the
// streaming calls, and an error status and trailer the app returns reach
// the client unchanged.
func TestGRPCColdCallsReleasedOnReadiness(t *testing.T) {
	h := startHarness(t, grpcServices)
	app := startGRPCApp(t, "pod-a")
	client := dialGRPC(t, h.addr, "grpc.test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type unary struct {
		resp *testpb.SimpleResponse
		err  error
	}
	unaryDone := make(chan unary, 1)
	go func() {
		resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("u")}})
		unaryDone <- unary{resp, err}
	}()
	bidi, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall: %v", err)
	}
	// Sent while parked: held in the stream's flow-control window.
	if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("one")}}); err != nil {
		t.Fatalf("send while parked: %v", err)
	}
	h.waitMetric(`agimo_parked_requests{host="grpc.test"}`, 2)
	h.setEndpoints("apps", "grpc", route.AppProtocolH2C, true, app)

	u := <-unaryDone
	if u.err != nil || u.resp.GetHostname() != "pod-a" || string(u.resp.GetPayload().GetBody()) != "u" {
		t.Fatalf("unary: got %v, %v; want hostname pod-a, payload u", u.resp, u.err)
	}
	for i, want := range []string{"pod-a:one", "two", "three"} {
		if i > 0 {
			if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(want)}}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		got, err := bidi.Recv()
		if err != nil || string(got.GetPayload().GetBody()) != want {
			t.Fatalf("bidi recv %d: got %q, %v; want %q", i, got.GetPayload().GetBody(), err, want)
		}
	}
	if err := bidi.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("bidi end: got %v; want io.EOF (status OK)", err)
	}

	// Server streaming and client streaming, warm.
	out, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 3}, {Size: 70000}, {Size: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{3, 70000, 1} {
		got, err := out.Recv()
		if err != nil || len(got.GetPayload().GetBody()) != want {
			t.Fatalf("server stream %d: got %d bytes, %v; want %d", i, len(got.GetPayload().GetBody()), err, want)
		}
	}
	if _, err := out.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("server stream end: got %v; want io.EOF", err)
	}
	in, err := client.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 100000, 5} {
		if err := in.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}); err != nil {
			t.Fatal(err)
		}
	}
	if sum, err := in.CloseAndRecv(); err != nil || sum.GetAggregatedPayloadSize() != 100015 {
		t.Fatalf("client stream: got %v, %v; want 100015", sum, err)
	}

	// The app's own error status and message, and its trailer, untouched:
	// grpc-message is percent-encoded on the wire, so non-ASCII and '%'
	// survive only if nothing in between rewrites it.
	// An error without a message is a Trailers-Only response (a single
	// HEADERS frame with END_STREAM): it must stay one, every time, or
	// the client sees a stream without trailers; hence the repeats.
	const msg = "denied: 100% sure ✓"
	const errCalls = 50
	for i := range errCalls {
		var trailer metadata.MD
		_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{
			Code: int32(codes.PermissionDenied), Message: msg}}, grpc.Trailer(&trailer))
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != msg {
			t.Fatalf("error status, call %d: got %v %q; want PermissionDenied %q", i, st.Code(), st.Message(), msg)
		}
		if got := trailer.Get("x-served-by"); len(got) != 1 || got[0] != "pod-a" {
			t.Fatalf("call %d: trailer x-served-by = %q; want [pod-a]", i, got)
		}
	}

	if got := h.metric(`agimo_requests_total{host="grpc.test"}`); got != 4+errCalls {
		t.Errorf("requests_total = %v; want %d (one per call)", got, 4+errCalls)
	}
	h.waitMetric(`agimo_parked_requests{host="grpc.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="grpc.test"}`, 0)
	waitNoHandlers(t)
}

// Agimo's own refusals reach a gRPC client as gRPC statuses with a
// message that says why, not as transport errors.
func TestGRPCRefusals(t *testing.T) {
	h := startHarness(t, grpcServices)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(c testgrpc.TestServiceClient, ctx context.Context) error {
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
		return err
	}
	check := func(what string, err error, code codes.Code, msg string) {
		t.Helper()
		st := status.Convert(err)
		if st.Code() != code || !strings.Contains(st.Message(), msg) {
			t.Errorf("%s: got %v %q; want %v with %q", what, st.Code(), st.Message(), code, msg)
		}
	}

	t.Run("park timeout", func(t *testing.T) {
		err := call(dialGRPC(t, h.addr, "short.test"), ctx)
		check("park timeout", err, codes.Unavailable, "service short.test did not become ready within 200ms")
		if got := h.metric(`agimo_park_timeouts_total{host="short.test"}`); got != 1 {
			t.Errorf("park timeouts = %v; want 1", got)
		}
	})
	t.Run("no route", func(t *testing.T) {
		check("no route", call(dialGRPC(t, h.addr, "nope.test"), ctx), codes.Unimplemented, "Not Found")
	})
	t.Run("max_parked", func(t *testing.T) {
		c := dialGRPC(t, h.addr, "one.test")
		first, stop := context.WithCancel(ctx)
		parked := make(chan error, 1)
		go func() { parked <- call(c, first) }()
		h.waitMetric(`agimo_parked_requests{host="one.test"}`, 1)
		check("max_parked", call(c, ctx), codes.Unavailable, "too many requests waiting for service one.test")
		if got := h.metric(`agimo_park_rejected_total{host="one.test"}`); got != 1 {
			t.Errorf("park rejected = %v; want 1", got)
		}
		stop()
		check("cancelled while parked", <-parked, codes.Canceled, "")
		h.waitMetric(`agimo_parked_requests{host="one.test"}`, 0)
	})
	t.Run("grpc-timeout", func(t *testing.T) {
		// The route waits 10s; the call's deadline (sent as grpc-timeout)
		// is shorter, and bounds the park.
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		err := call(dialGRPC(t, h.addr, "grpc.test"), short)
		check("grpc-timeout", err, codes.DeadlineExceeded, "")
		h.waitMetric(`agimo_parked_requests{host="grpc.test"}`, 0)
		h.waitMetric(`agimo_active_requests{host="grpc.test"}`, 0)

		// Agimo's own answer, seen by a client that does not give up by
		// itself: DEADLINE_EXCEEDED too, in a Trailers-Only response.
		req, err := http.NewRequest(http.MethodPost, "http://grpc.test/grpc.testing.TestService/UnaryCall", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		req.Header.Set("Grpc-Timeout", "150m")
		r := <-send(h2cClient(t, h.addr), req)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := r.resp.Header.Get("Grpc-Status"); r.resp.StatusCode != 200 || got != "4" {
			t.Errorf("got HTTP %d grpc-status %q; want 200 and 4 (DEADLINE_EXCEEDED)", r.resp.StatusCode, got)
		}
		if got, want := r.resp.Header.Get("Grpc-Message"), "service grpc.test did not become ready within the call's grpc-timeout 150ms"; got != want {
			t.Errorf("grpc-message = %q; want %q", got, want)
		}
		h.waitMetric(`agimo_parked_requests{host="grpc.test"}`, 0)
	})
	waitNoHandlers(t)
}

// upstream_timeout bounds the upstream's silence while Agimo waits for
// it, not a client's upload: a client-streaming call whose messages keep
// coming for longer than upstream_timeout, to an app that answers only at
// the end (as grpc-go's StreamingInputCall does), completes.
func TestGRPCClientStreamLongerThanUpstreamTimeout(t *testing.T) {
	h := startHarness(t, strings.Replace(grpcServices, `timeout = "10s"`, "timeout = \"10s\"\nupstream_timeout = \"300ms\"", 1))
	app := startGRPCApp(t, "pod-a")
	h.setEndpoints("apps", "grpc", route.AppProtocolH2C, true, app)
	h.waitReady("grpc.test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := dialGRPC(t, h.addr, "grpc.test").StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for n := 0; time.Since(start) < time.Second; n++ {
		if err := in.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
			t.Fatalf("send %d after %v: %v", n, time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond) // the client's pace, well within upstream_timeout
	}
	if _, err := in.CloseAndRecv(); err != nil {
		t.Fatalf("client stream over %v: %v; want it complete", time.Since(start), err)
	}
}

// client_body_timeout bounds each wait for the client's next bytes, as
// nginx's does for gRPC too: a bidirectional stream whose client stays
// silent past it is ended, the gauges settle, and nothing is logged
// above debug (httputil's per-stream line included).
func TestGRPCIdleClientStreamEnded(t *testing.T) {
	h := startHarness(t, strings.Replace(grpcServices, `timeout = "10s"`, "timeout = \"10s\"\nclient_body_timeout = \"200ms\"", 1))
	app := startGRPCApp(t, "pod-a")
	h.setEndpoints("apps", "grpc", route.AppProtocolH2C, true, app)
	h.waitReady("grpc.test")
	var stdlog lockedBuffer
	log.SetOutput(&stdlog)
	defer log.SetOutput(os.Stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bidi, err := dialGRPC(t, h.addr, "grpc.test").FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("one")}}); err != nil {
		t.Fatal(err)
	}
	if got, err := bidi.Recv(); err != nil || string(got.GetPayload().GetBody()) != "pod-a:one" {
		t.Fatalf("recv: got %v, %v; want pod-a:one", got, err)
	}
	// The client now says nothing: Agimo ends the stream.
	_, err = bidi.Recv()
	if st := status.Convert(err); err == nil || st.Code() == codes.OK {
		t.Fatalf("recv after the client's silence: got %v; want the stream ended", err)
	}
	h.waitMetric(`agimo_active_requests{host="grpc.test"}`, 0)
	waitNoHandlers(t)
	if got := stdlog.String(); got != "" {
		t.Errorf("standard logger got %q; want nothing", got)
	}
}
