package h2_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/agimo/agimo/route"
)

// startH2CApp serves handler over h2c only on a loopback port and returns
// its address.
func startH2CApp(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h2c.NewHandler(handler, &http2.Server{})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("h2c app: %v", err)
		}
	})
	return ln.Addr().String()
}

// An HTTP/2 stream to an h2c upstream (not gRPC) is relayed stream to
// stream: request body and trailers up, response body and trailers down,
// forwarding fields set, parked while cold.
func TestH2CStreamToH2CUpstream(t *testing.T) {
	h := startHarness(t, oneService)
	type seen struct {
		proto, body, trailer, xff, xfp, xfh, host string
	}
	got := make(chan seen, 1)
	app := startH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Proto, string(b), r.Trailer.Get("X-Up-Sum"), r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Host}
		w.Header().Set("Trailer", "X-Down-Sum")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "echo: ")
		w.(http.Flusher).Flush()
		w.Write(b)
		w.Header().Set("X-Down-Sum", "d1")
	})
	c := h2cClient(t, h.addr)
	req, _ := http.NewRequest(http.MethodPut, "http://app.test/h2c", io.NopCloser(strings.NewReader("payload")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Up-Sum": {"u1"}}
	done := send(c, req)
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", route.AppProtocolH2C, true, app)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.StatusCode != http.StatusAccepted || r.body != "echo: payload" || r.resp.Trailer.Get("X-Down-Sum") != "d1" {
		t.Errorf("got %d %q trailer %v; want 202 %q with X-Down-Sum d1", r.resp.StatusCode, r.body, r.resp.Trailer, "echo: payload")
	}
	want := seen{"HTTP/2.0", "payload", "u1", "127.0.0.1", "http", "app.test", "app.test"}
	if s := <-got; s != want {
		t.Errorf("upstream saw %+v; want %+v", s, want)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// An upstream silent past upstream_timeout gets the stream 504, and a
// gRPC call DEADLINE_EXCEEDED; the upstream's stream is reset.
func TestH2CUpstreamSilent(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "10s"`, "timeout = \"10s\"\nupstream_timeout = \"200ms\"", 1))
	reset := make(chan struct{}, 2)
	app := startH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		reset <- struct{}{}
	})
	h.setEndpoints("apps", "app", route.AppProtocolH2C, true, app)
	h.waitReady("app.test")
	r := get(t, h2cClient(t, h.addr), "http://app.test/slow")
	if r.resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("got %d %q; want 504", r.resp.StatusCode, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dialGRPC(t, h.addr, "app.test").UnaryCall(ctx, &testpb.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "app.test timed out") {
		t.Errorf("gRPC: got %v %q; want DeadlineExceeded, timed out", st.Code(), st.Message())
	}
	<-reset
	<-reset
	if got := h.metric(`agimo_upstream_errors_total{host="app.test",kind="timeout"}`); got != 2 {
		t.Errorf("upstream timeouts = %v; want 2", got)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// A client that resets its stream while an h2c upstream is answering it
// gets the upstream's stream reset too.
func TestClientResetWhileForwardedH2C(t *testing.T) {
	h := startHarness(t, oneService)
	started, cancelled := make(chan struct{}), make(chan struct{})
	app := startH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		close(cancelled)
	})
	h.setEndpoints("apps", "app", route.AppProtocolH2C, true, app)
	h.waitReady("app.test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://app.test/", nil)
	done := send(h2cClient(t, h.addr), req)
	<-started
	cancel()
	<-cancelled
	if r := <-done; r.err == nil {
		t.Errorf("got %d; want the request cancelled", r.resp.StatusCode)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	waitNoHandlers(t)
}

// A gRPC call to a service whose endpoints speak HTTP/1.1 cannot be
// carried: UNAVAILABLE, with a message that says how to fix it.
func TestGRPCToHTTP1Service(t *testing.T) {
	h := startHarness(t, oneService)
	up := newH1Upstream(t)
	h.setEndpoints("apps", "app", "", true, up.addr())
	h.waitReady("app.test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dialGRPC(t, h.addr, "app.test").UnaryCall(ctx, &testpb.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "does not speak h2c") {
		t.Errorf("got %v %q; want Unavailable, does not speak h2c", st.Code(), st.Message())
	}
	if up.hits.Load() != 0 {
		t.Errorf("upstream hits = %d; want 0", up.hits.Load())
	}
}

// An HTTP/1.1 upstream that ends the connection in the middle of its body
// gets the stream reset: the client sees an incomplete response, not a
// clean end, whether the length was declared or chunked.
func TestH1UpstreamBodyCutShort(t *testing.T) {
	h := startHarness(t, oneService)
	up := newH1UpstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		c, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if r.URL.Path == "/length" {
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
		} else {
			buf.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly this\r\n")
		}
		buf.Flush()
	})
	h.setEndpoints("apps", "app", "", true, up.addr())
	h.waitReady("app.test")
	c := h2cClient(t, h.addr)
	for _, path := range []string{"/length", "/chunked"} {
		req, _ := http.NewRequest(http.MethodGet, "http://app.test"+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			continue // reset before the head went out: incomplete too
		}
		b, err := io.ReadAll(bufio.NewReader(resp.Body))
		resp.Body.Close()
		if err == nil {
			t.Errorf("%s: body %q ended cleanly; want an error", path, b)
		}
	}
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 2 {
		t.Errorf("requests_total = %v; want 2", got)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	waitNoHandlers(t)
}

// HEAD, 204 and 304 from an HTTP/1.1 upstream carry no body, and a HEAD
// keeps the Content-Length the upstream announced.
func TestH1UpstreamBodilessAnswers(t *testing.T) {
	h := startHarness(t, oneService)
	up := newH1UpstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}
	})
	h.setEndpoints("apps", "app", "", true, up.addr())
	h.waitReady("app.test")
	c := h2cClient(t, h.addr)
	for _, tc := range []struct {
		method, path string
		status       int
		length       int64
	}{
		{http.MethodHead, "/", 200, 11},
		{http.MethodGet, "/", 200, 11},
		{http.MethodGet, "/204", 204, 0},
		{http.MethodGet, "/304", 304, 0},
	} {
		req, _ := http.NewRequest(tc.method, "http://app.test"+tc.path, nil)
		r := <-send(c, req)
		if r.err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, r.err)
		}
		wantBody := ""
		if tc.method == http.MethodGet && tc.status == 200 {
			wantBody = "hello world"
		}
		if r.resp.StatusCode != tc.status || r.body != wantBody || (tc.length > 0 && r.resp.ContentLength != tc.length) {
			t.Errorf("%s %s: got %d %q length %d; want %d %q length %d", tc.method, tc.path,
				r.resp.StatusCode, r.body, r.resp.ContentLength, tc.status, wantBody, tc.length)
		}
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// Request trailers from an HTTP/2 client reach an HTTP/1.1 upstream in
// the chunked body's trailer section, as they would from an HTTP/1.1
// client; fields that may not be trailers do not.
func TestRequestTrailersToH1Upstream(t *testing.T) {
	h := startHarness(t, oneService)
	got := make(chan http.Header, 1)
	up := newH1UpstreamFunc(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Trailer
	})
	h.setEndpoints("apps", "app", "", true, up.addr())
	h.waitReady("app.test")
	req, _ := http.NewRequest(http.MethodPost, "http://app.test/", io.NopCloser(strings.NewReader("body")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Sum": {"s1"}}
	if r := <-send(h2cClient(t, h.addr), req); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("got %v, %v; want 200", r.resp, r.err)
	}
	if tr := <-got; tr.Get("X-Sum") != "s1" {
		t.Errorf("upstream trailer = %v; want X-Sum: s1", tr)
	}
}

// An endpoint announced ready that does not listen yet refuses the
// connection: the stream is retried, its body kept, until the app
// listens, over h2c and over HTTP/1.1 alike (core.Attempt).
func TestRefusedEndpointRetried(t *testing.T) {
	for _, tc := range []struct {
		name, appProto string
	}{
		{"h2c", route.AppProtocolH2C},
		{"http1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, oneService)
			// A port nothing listens on, for now.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			h.setEndpoints("apps", "app", tc.appProto, true, addr)
			h.waitReady("app.test")
			req, _ := http.NewRequest(http.MethodPost, "http://app.test/", strings.NewReader("kept"))
			done := send(h2cClient(t, h.addr), req)
			h.waitMetricAtLeast(`agimo_upstream_errors_total{host="app.test",kind="refused"}`, 1)

			echo := func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				io.WriteString(w, r.Proto+" "+string(b))
			}
			ln, err = net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("port %s taken meanwhile: %v", addr, err)
			}
			var srv *http.Server
			if tc.appProto != "" {
				srv = &http.Server{Handler: h2c.NewHandler(http.HandlerFunc(echo), &http2.Server{})}
			} else {
				srv = &http.Server{Handler: http.HandlerFunc(echo)}
			}
			served := make(chan struct{})
			go func() { defer close(served); _ = srv.Serve(ln) }()
			defer func() { srv.Close(); <-served }()

			r := <-done
			want := "HTTP/2.0 kept"
			if tc.appProto == "" {
				want = "HTTP/1.1 kept"
			}
			if r.err != nil || r.resp.StatusCode != 200 || r.body != want {
				t.Fatalf("got %v %q, %v; want 200 %q", r.resp, r.body, r.err, want)
			}
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
		})
	}
}
