package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

func findNginxForTest(t *testing.T) string {
	t.Helper()
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	t.Skip("nginx not installed")
	return ""
}

// startTestUpstreams serves upstreamHandler (HTTP/1.1, fasthttp) and the
// gRPC test service (h2c) in process, as `bench upstream` does.
func startTestUpstreams(t *testing.T) (httpAddr, grpcAddr string) {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fasthttp.Server{Handler: upstreamHandler, NoDefaultServerHeader: true, NoDefaultDate: true, CloseOnShutdown: true}
	gs := newGRPCUpstream()
	var wg sync.WaitGroup
	wg.Go(func() { fs.Serve(hl) })
	wg.Go(func() { gs.Serve(gl) })
	t.Cleanup(func() {
		fs.Shutdown()
		gs.Stop()
		wg.Wait()
	})
	return hl.Addr().String(), gl.Addr().String()
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ps []int
	for range n {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// The edge nginx answers every edge protocol (each scenario's probe), and
// forwards over HTTPS, h2 and h2c the header fields the plain nginx
// forwards over HTTP/1.1 (which checkParity holds equal to Agimo's), but
// for X-Forwarded-Proto, https over TLS: the edge comparison is as fair as
// the plain one. Real nginx, real clients (net/http, grpc-go).
func TestNginxEdgeAnswersAndForwardsLikePlain(t *testing.T) {
	bin := findNginxForTest(t)
	httpUp, grpcUp := startTestUpstreams(t)
	dir := t.TempDir()
	cert, err := writeBenchCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	plainDir, edgeDir := filepath.Join(dir, "plain"), filepath.Join(dir, "edge")
	os.MkdirAll(plainDir, 0o755)
	os.MkdirAll(edgeDir, 0o755)
	plain, err := startNginx(bin, plainDir, "", nginxParams{Port: ports[0], HTTPHost: hostHTTP, WebHost: hostWeb, HTTPUp: httpUp, WebUp: httpUp, Conns: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.stop()
	ng, err := startNginxEdge(bin, edgeDir, "", nginxEdgeParams{TLSPort: ports[1], H2CPort: ports[2], HTTPHost: hostHTTP, GRPCHost: hostGRPC,
		HTTPUp: httpUp, GRPCUp: grpcUp, Cert: cert.certFile, Key: cert.keyFile, Conns: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer ng.stop()
	ed := &edgeEnv{cert: cert, nginx: ng, probed: map[string]error{}}

	for _, tc := range []struct{ proto, addr, host string }{
		{"https", ng.tlsAddr, hostHTTP},
		{"h2", ng.tlsAddr, hostHTTP},
		{"h2c", ng.h2cAddr, hostHTTP},
		{"grpc", ng.h2cAddr, hostGRPC},
	} {
		if err := ed.probe(tNginx, tc.proto, tc.addr, tc.host); err != nil {
			t.Errorf("probe %s: got %v; want nil", tc.proto, err)
		}
	}

	want, err := forwardedHeaders(plain.addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ proto, addr, scheme string }{
		{"https", ng.tlsAddr, "https"},
		{"h2", ng.tlsAddr, "https"},
		{"h2c", ng.h2cAddr, "http"},
	} {
		got, err := ed.get(tc.proto, tc.addr, hostHTTP, "/echo-headers", parityHeader())
		if err != nil {
			t.Fatalf("%s: %v", tc.proto, err)
		}
		t.Logf("%s forwards:\n  %s", tc.proto, strings.Join(got, "\n  "))
		w := slices.Clone(want)
		for i, l := range w {
			if strings.HasPrefix(l, "X-Forwarded-Proto: ") {
				w[i] = "X-Forwarded-Proto: " + tc.scheme
			}
		}
		if !slices.Equal(sameIDs(got), sameIDs(w)) {
			t.Errorf("%s: got\n  %s\nwant (plain nginx)\n  %s", tc.proto, strings.Join(got, "\n  "), strings.Join(w, "\n  "))
		}
	}

	// The parity check itself, with nginx standing in for agimo: the
	// same proxy on both sides must pass over every protocol.
	ed.agimo, ed.agimoTLS = &agimoProc{addr: ng.h2cAddr}, ng.tlsAddr
	if err := ed.checkParity(); err != nil {
		t.Errorf("parity of nginx with itself: got %v; want nil", err)
	}
}

// An agimo that cannot be measured fails each target with the reason, and
// nginx is still measured; a parity failure fails both proxies.
func TestEdgeTargetsFailWithReason(t *testing.T) {
	e := &env{s: &suite{nginxBin: "nginx"}, up: &upstream{grpc: "127.0.0.1:1"},
		edge: &edgeEnv{agimoErr: errors.New("agimo does not serve TLS yet"), nginx: &edgeNginx{nginxProc: &nginxProc{}, tlsAddr: "127.0.0.1:2", h2cAddr: "127.0.0.1:3"},
			probed: map[string]error{tNginx + "/h2": nil, tNginx + "/grpc": nil}}}
	sc := &scenario{name: "h2", mode: "h2", edge: edgeTLS}
	ts := e.targets(sc)
	if len(ts) != 2 || ts[0].name != tAgimo || ts[1].name != tNginx {
		t.Fatalf("got targets %+v; want agimo, nginx", ts)
	}
	if ts[0].fail != "agimo does not serve TLS yet" || ts[1].fail != "" || ts[1].addr != "127.0.0.1:2" || ts[1].scheme != "https" {
		t.Errorf("got %+v; want agimo failed with the reason, nginx on its TLS port", ts)
	}
	ts = e.targets(&scenario{name: "grpc-unary", mode: "grpc", edge: edgeGRPC, host: hostGRPC})
	if len(ts) != 3 || ts[0].name != tDirect || ts[0].addr != "127.0.0.1:1" || ts[2].addr != "127.0.0.1:3" {
		t.Errorf("grpc: got %+v; want direct to the gRPC upstream, agimo, nginx on its h2c port", ts)
	}
	e.edge.parityErr = errors.New("parity over h2: different")
	for _, tg := range e.targets(sc)[1:] {
		if tg.fail == "" {
			t.Errorf("%s: not failed by a parity failure", tg.name)
		}
	}
}
