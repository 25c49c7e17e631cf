package load

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// tlsServer is an httptest TLS server (its certificate covers example.com)
// that counts new connections and records each request's TLS state, with
// its certificate written to a PEM file for Config.CAFile.
type tlsServer struct {
	*httptest.Server
	caFile string
	conns  atomic.Int64
	mu     sync.Mutex
	states []tls.ConnectionState
	hosts  []string
}

func newTLSServer(t *testing.T, h2 bool) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.states = append(s.states, *r.TLS)
		s.hosts = append(s.hosts, r.Host)
		s.mu.Unlock()
		io.WriteString(w, "Hello, World!")
	}))
	s.EnableHTTP2 = h2
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the test's
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	s.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *tlsServer) seen() ([]tls.ConnectionState, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.states), slices.Clone(s.hosts)
}

func addrOf(u string) string { return strings.TrimPrefix(u, "https://") }

// HTTP over https: keep-alive, one handshake per connection, SNI and Host
// from Config.Host, the certificate verified against CAFile.
func TestHTTPSKeepAlive(t *testing.T) {
	srv := newTLSServer(t, false)
	res, err := HTTP(context.Background(), Config{URL: srv.URL + "/small", Host: "example.com", CAFile: srv.caFile, Conns: 2, Dur: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 || res.Bytes != 13*res.Ops {
		t.Fatalf("got ops %d errors %d bytes %d (%v); want ops, no errors, 13 bytes each", res.Ops, res.Errors, res.Bytes, res.ErrKinds)
	}
	if n := srv.conns.Load(); n > 2 {
		t.Errorf("got %d connections; want at most 2 (keep-alive)", n)
	}
	states, hosts := srv.seen()
	if states[0].ServerName != "example.com" || hosts[0] != "example.com" {
		t.Errorf("got SNI %q Host %q; want example.com for both", states[0].ServerName, hosts[0])
	}
}

// Handshakes: a new connection per request, full TLS 1.3 handshakes on
// X25519, never resumed; an unverifiable certificate is an error, not an op.
func TestHandshakesAreFullAndNew(t *testing.T) {
	srv := newTLSServer(t, false)
	res, err := Handshakes(context.Background(), Config{URL: srv.URL + "/small", Host: "example.com", CAFile: srv.caFile, Conns: 2, Dur: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 || res.Bytes != 13*res.Ops {
		t.Fatalf("got ops %d errors %d bytes %d (%v); want ops, no errors", res.Ops, res.Errors, res.Bytes, res.ErrKinds)
	}
	if n := srv.conns.Load(); n < res.Ops {
		t.Errorf("got %d connections for %d ops; want one per op at least", n, res.Ops)
	}
	states, _ := srv.seen()
	for _, st := range states {
		if st.Version != tls.VersionTLS13 || st.DidResume || st.CurveID != tls.X25519 {
			t.Fatalf("got version %x resumed %v curve %v; want TLS 1.3, full, X25519", st.Version, st.DidResume, st.CurveID)
		}
	}

	// A second: the first use of the system's roots loads them, which can
	// take longer than a short run.
	res, err = Handshakes(context.Background(), Config{URL: srv.URL + "/small", Host: "example.com", Conns: 1, Dur: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 0 || res.Errors == 0 {
		t.Errorf("without the CA: got ops %d errors %d; want only errors", res.Ops, res.Errors)
	}
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	authority atomic.Value
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md[":authority"]) > 0 {
		s.authority.Store(md[":authority"][0])
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

// GRPC makes unary calls over h2c with the :authority from Host.
func TestGRPCUnaryCalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &testService{}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, svc)
	var wg sync.WaitGroup
	wg.Go(func() { gs.Serve(ln) })
	defer wg.Wait()
	defer gs.Stop()
	res, err := GRPC(context.Background(), Config{URL: "http://" + ln.Addr().String(), Host: "grpc.test", Conns: 2, Dur: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 || res.Bytes != GRPCPayload*res.Ops {
		t.Fatalf("got ops %d errors %d bytes %d (%v); want ops, no errors, %d bytes each", res.Ops, res.Errors, res.Bytes, res.ErrKinds, GRPCPayload)
	}
	if a, _ := svc.authority.Load().(string); a != "grpc.test" {
		t.Errorf("got :authority %q; want grpc.test", a)
	}
}

func TestParseH2Load(t *testing.T) {
	r := &Result{Latency: NewHist(), ErrKinds: map[string]int64{}}
	parseH2LoadLog([]byte("1796620086628334\t0\t336\n1796620087628306\t200\t231\n1796620087628307\t200\t1000\n1796620087628308\t503\t10\nbad line\n"), r)
	parseH2LoadSummary(`finished in 1.50s, 72788.00 req/s, 6.11MB/s
requests: 72788 total, 72788 started, 72788 done, 72780 succeeded, 8 failed, 3 errored, 2 timeout
status codes: 72787 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 6.11MB (6405267) total, 7.09MB (7434712) headers (space savings 42.86%), 213.54KB (218668) data
`, r)
	if r.Ops != 2 || r.Latency.Count() != 2 || r.Latency.Max() != time.Millisecond {
		t.Errorf("got ops %d samples %d max %v; want 2, 2, 1ms", r.Ops, r.Latency.Count(), r.Latency.Max())
	}
	if r.Errors != 6 || r.ErrKinds["status 503"] != 1 || r.ErrKinds["h2load: errored"] != 3 || r.ErrKinds["h2load: timeout"] != 2 {
		t.Errorf("got errors %d %v; want 6: one 503, 3 errored, 2 timeouts", r.Errors, r.ErrKinds)
	}
	if r.Bytes != 218668 {
		t.Errorf("got bytes %d; want 218668", r.Bytes)
	}
}

// H2Load drives real h2load (where installed) over h2 and h2c, with
// :authority and SNI from Host, and marks the measured window.
func TestH2Load(t *testing.T) {
	if _, err := exec.LookPath("h2load"); err != nil {
		t.Skip("h2load not installed (nghttp2-client)")
	}
	var protos, hosts sync.Map
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		hosts.Store(r.Host, true)
		io.WriteString(w, "Hello, World!")
	})
	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.EnableHTTP2 = true
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2c := httptest.NewUnstartedServer(h)
	h2c.Config.Protocols = &p
	h2c.Start()
	defer h2c.Close()
	for _, url := range []string{tlsSrv.URL, h2c.URL} {
		var phases []bool
		res, err := H2Load(context.Background(), Config{URL: url + "/small", Host: "example.com", Conns: 2, Streams: 4,
			Dur: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Phase: func(m bool) { phases = append(phases, m) }})
		if err != nil {
			t.Fatal(err)
		}
		if res.Ops == 0 || res.Errors != 0 || res.Latency.Count() != uint64(res.Ops) {
			t.Errorf("%s: got ops %d errors %d (%v) samples %d; want ops, no errors, a sample each", url, res.Ops, res.Errors, res.ErrKinds, res.Latency.Count())
		}
		if !slices.Equal(phases, []bool{true, false}) {
			t.Errorf("%s: got phases %v; want [true false]", url, phases)
		}
	}
	if _, ok := protos.Load("HTTP/2.0"); !ok {
		t.Error("no HTTP/2 request reached the servers")
	}
	if _, ok := protos.Load("HTTP/1.1"); ok {
		t.Error("an HTTP/1.1 request reached the servers")
	}
	if _, ok := hosts.Load("example.com"); !ok {
		t.Error("no request with :authority example.com")
	}
	hosts.Range(func(k, _ any) bool {
		if k != "example.com" {
			t.Errorf("got :authority %v; want example.com", k)
		}
		return true
	})
}
