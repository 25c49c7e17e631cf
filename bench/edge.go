package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/agimo/agimo/bench/load"
)

// The edge scenarios (issue 11): HTTPS, TLS handshakes, HTTP/2 over TLS
// and h2c, gRPC. They run against an agimo and an nginx of their own,
// started beside the layout's, so that the other scenarios never depend on
// Agimo's TLS support: an agimo that does not take the TLS config, or does
// not answer a protocol, fails these scenarios with a message saying so,
// while nginx's figures are still measured.

// edgeKind is where an edge scenario's load goes.
type edgeKind string

const (
	edgeTLS  edgeKind = "tls"  // the TLS listeners: HTTP/1.1 or h2 by ALPN
	edgeH2C  edgeKind = "h2c"  // h2c with prior knowledge: Agimo's plain port, nginx's http2 port
	edgeGRPC edgeKind = "grpc" // gRPC over h2c on the same listeners, Host grpc.bench
)

// benchCert is the edge scenarios' certificate, made at run time: ECDSA
// P-256, self-signed, for every bench host and 127.0.0.1. The load
// generators verify against it (-cacert).
type benchCert struct {
	certFile, keyFile string
	pool              *x509.CertPool
}

func writeBenchCert(dir string) (*benchCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "agimo bench"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root, for -cacert
		DNSNames:              []string{hostHTTP, hostWeb, hostCold, hostGRPC},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("bench certificate: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("bench certificate key: %w", err)
	}
	c := &benchCert{certFile: filepath.Join(dir, "bench-cert.pem"), keyFile: filepath.Join(dir, "bench-key.pem")}
	if err := os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("bench certificate: %w", err)
	}
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, fmt.Errorf("bench certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("bench certificate: %w", err)
	}
	c.pool = x509.NewCertPool()
	c.pool.AddCert(cert)
	return c, nil
}

// edgeEnv is one layout's edge proxies.
type edgeEnv struct {
	cert     *benchCert
	agimo    *agimoProc
	agimoTLS string // agimo's --tls-port listener
	agimoErr error  // why there is no agimo to measure
	nginx    *edgeNginx
	nginxErr error
	// parityErr is set when both proxies run but forward different headers.
	parityErr error
	probed    map[string]error // target/protocol → its probe's result
}

// startEdge starts the edge agimo and nginx. Their failures are kept, to
// fail the edge scenarios' runs, not the layout.
func (e *env) startEdge() error {
	if e.s.cert == nil {
		c, err := writeBenchCert(e.s.dir)
		if err != nil {
			return err
		}
		e.s.cert = c
	}
	ed := &edgeEnv{cert: e.s.cert, probed: map[string]error{}}
	e.edge = ed
	if e.s.nginxBin != "" {
		ed.nginx, ed.nginxErr = e.startNginxEdge()
	}
	tlsPort, err := freePort()
	if err != nil {
		return err
	}
	conf := agimoConfig(benchNS, []agimoService{
		{Host: hostHTTP, Service: "hot-http", Address: e.up.httpAddr, CertFile: ed.cert.certFile, KeyFile: ed.cert.keyFile},
		{Host: hostGRPC, Service: "hot-grpc", Address: e.up.grpc, Protocol: "h2c"},
	})
	a, err := startAgimo(e.s.agimoBin, e.dir, "agimo-edge", e.lay.ProxyCPUs, e.s.cluster.kubeconfig, conf, false,
		"--tls-port", strconv.Itoa(tlsPort))
	if err != nil {
		// The last line of its log says why (an unknown flag or key).
		ed.agimoErr = fmt.Errorf("agimo does not serve TLS yet (issue 11): started with tls_cert_file/tls_key_file and --tls-port, it said %q (log: %s)",
			lastLine(err.Error()), filepath.Join(e.dir, "agimo-edge.log"))
	} else {
		ed.agimo, ed.agimoTLS = a, fmt.Sprintf("127.0.0.1:%d", tlsPort)
		if err := a.p.waitDial(ed.agimoTLS, 5*time.Second); err != nil {
			ed.agimoErr = fmt.Errorf("agimo started with a certificate and --tls-port %d but does not listen there (issue 11): %w", tlsPort, err)
		}
	}
	if ed.agimoErr == nil && ed.nginx != nil {
		ed.parityErr = ed.checkParity()
	}
	return nil
}

func (e *env) startNginxEdge() (*edgeNginx, error) {
	var ports [2]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	dir := filepath.Join(e.dir, "nginx-edge")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginx dir: %w", err)
	}
	return startNginxEdge(e.s.nginxBin, dir, e.lay.ProxyCPUs, nginxEdgeParams{
		TLSPort: ports[0], H2CPort: ports[1], HTTPHost: hostHTTP, GRPCHost: hostGRPC,
		HTTPUp: e.up.httpAddr, GRPCUp: e.up.grpc, Cert: e.s.cert.certFile, Key: e.s.cert.keyFile,
		Conns: int(min(e.s.fdLimit, 1<<16)) - fdReserve, Files: int(min(e.s.fdLimit, 1<<20)),
	})
}

func (ed *edgeEnv) stop() {
	if ed.nginx != nil {
		ed.nginx.stop()
	}
	if ed.agimo != nil {
		ed.agimo.stop()
	}
}

// edgeProto is the protocol an edge scenario speaks, as its probe checks it.
func edgeProto(sc *scenario) string {
	switch {
	case sc.mode == load.ModeGRPC:
		return "grpc"
	case sc.mode == load.ModeH2 && sc.edge == edgeTLS:
		return "h2"
	case sc.mode == load.ModeH2:
		return "h2c"
	}
	return "https"
}

var protoDesc = map[string]string{
	"https": "HTTP/1.1 over TLS",
	"h2":    "HTTP/2 over TLS (ALPN h2)",
	"h2c":   "h2c (HTTP/2 with prior knowledge, RFC 9113 §3.3) on its plain port",
	"grpc":  "a gRPC unary call over h2c on its plain port",
}

// edgeTargets are an edge scenario's targets: agimo and nginx, and the
// upstream itself for gRPC (the only edge protocol the upstream speaks).
// A target that cannot be measured carries the reason in fail.
func (e *env) edgeTargets(sc *scenario) []target {
	ed := e.edge
	proto := edgeProto(sc)
	scheme := "http"
	if sc.edge == edgeTLS {
		scheme = "https"
	}
	var ts []target
	if sc.edge == edgeGRPC {
		ts = append(ts, target{name: tDirect, addr: e.up.grpc, scheme: scheme})
	}
	ag := target{name: tAgimo, scheme: scheme}
	if ed.agimoErr != nil {
		ag.fail = ed.agimoErr.Error()
	} else {
		ag.addr = ed.agimo.addr
		if sc.edge == edgeTLS {
			ag.addr = ed.agimoTLS
		}
		ag.pids = func() []int { return []int{ed.agimo.p.pid()} }
		if err := ed.probe(tAgimo, proto, ag.addr, sc.hostOr()); err != nil {
			ag.fail = fmt.Sprintf("agimo does not answer %s (issue 11): %v", protoDesc[proto], err)
		}
	}
	ts = append(ts, ag)
	if e.s.nginxBin == "" {
		return ts
	}
	ng := target{name: tNginx, scheme: scheme}
	if ed.nginxErr != nil {
		ng.fail = "edge nginx did not start: " + ed.nginxErr.Error()
	} else {
		ng.addr = ed.nginx.h2cAddr
		if sc.edge == edgeTLS {
			ng.addr = ed.nginx.tlsAddr
		}
		ng.pids = ed.nginx.pids
		if err := ed.probe(tNginx, proto, ng.addr, sc.hostOr()); err != nil {
			ng.fail = fmt.Sprintf("nginx does not answer %s: %v", protoDesc[proto], err)
		}
	}
	ts = append(ts, ng)
	if ed.parityErr != nil {
		for i := range ts {
			if ts[i].name != tDirect && ts[i].fail == "" {
				ts[i].fail = ed.parityErr.Error()
			}
		}
	}
	return ts
}

// probe sends one request of proto to addr, once per layout, target and
// protocol, and says why it failed.
func (ed *edgeEnv) probe(name, proto, addr, host string) error {
	k := name + "/" + proto
	if err, ok := ed.probed[k]; ok {
		return err
	}
	var err error
	if proto == "grpc" {
		err = probeGRPC(addr, host)
	} else {
		var lines []string
		lines, err = ed.get(proto, addr, host, "/small", nil)
		if err == nil && strings.Join(lines, "\n") != smallBody {
			err = fmt.Errorf("body %q; want %q", strings.Join(lines, "\n"), smallBody)
		}
	}
	ed.probed[k] = err
	return err
}

// client is an HTTP client speaking exactly proto ("https", "h2", "h2c");
// over TLS, SNI names host, as a browser's would.
func (ed *edgeEnv) client(proto, host string) *http.Client {
	var p http.Protocols
	switch proto {
	case "https":
		p.SetHTTP1(true)
	case "h2":
		p.SetHTTP2(true)
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	}
	tr := &http.Transport{
		Protocols:          &p,
		TLSClientConfig:    &tls.Config{RootCAs: ed.cert.pool, ServerName: host, MinVersion: tls.VersionTLS12},
		DisableCompression: true, // no Accept-Encoding of the client's own
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// get sends GET path with Host host and the header fields hdr to addr
// over proto, and returns the 200 response's body as lines.
func (ed *edgeEnv) get(proto, addr, host, path string, hdr http.Header) ([]string, error) {
	c := ed.client(proto, host)
	defer c.CloseIdleConnections()
	scheme := "https"
	if proto == "h2c" {
		scheme = "http"
	}
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if want := map[string]int{"https": 1, "h2": 2, "h2c": 2}[proto]; resp.ProtoMajor != want {
		return nil, fmt.Errorf("answered over %s", resp.Proto)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, firstLine(string(b)))
	}
	return strings.Split(string(b), "\n"), nil
}

func probeGRPC(addr, host string) error {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(host))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: load.GRPCPayload})
	if err != nil {
		return err
	}
	if n := len(resp.GetPayload().GetBody()); n != load.GRPCPayload {
		return fmt.Errorf("payload of %d bytes; want %d", n, load.GRPCPayload)
	}
	return nil
}

// parityHeader is parityRequest's fields (parity.go) for a client library
// to send, over each edge protocol.
func parityHeader() http.Header {
	return http.Header{
		"User-Agent":       {"agimo-bench-parity"},
		"Accept":           {"*/*"},
		"X-Custom":         {"kept"},
		"X-Forwarded-For":  {"192.0.2.1"},
		"X-Forwarded-Host": {"spoofed.example"},
		"X_underscore":     {"dropped"},
	}
}

// checkParity fails unless agimo and nginx forward the same header fields
// over HTTP/1.1 over TLS, h2 and h2c, as checkParity does for plain HTTP.
// It is not asked of gRPC: the test service echoes no metadata.
func (ed *edgeEnv) checkParity() error {
	var errs []error
	for _, proto := range []string{"https", "h2", "h2c"} {
		aAddr, nAddr := ed.agimoTLS, ed.nginx.tlsAddr
		if proto == "h2c" {
			aAddr, nAddr = ed.agimo.addr, ed.nginx.h2cAddr
		}
		a, err := ed.get(proto, aAddr, hostHTTP, "/echo-headers", parityHeader())
		if err != nil {
			// Not a parity failure: the probe of each scenario says what
			// agimo does not answer.
			continue
		}
		n, err := ed.get(proto, nAddr, hostHTTP, "/echo-headers", parityHeader())
		if err != nil {
			errs = append(errs, fmt.Errorf("parity over %s: through nginx: %w", proto, err))
			continue
		}
		if !slices.Equal(sameIDs(a), sameIDs(n)) {
			errs = append(errs, fmt.Errorf("parity over %s: the proxies forward different headers, so the comparison would not be fair\nagimo:\n  %s\nnginx:\n  %s",
				proto, strings.Join(a, "\n  "), strings.Join(n, "\n  ")))
		}
	}
	return errors.Join(errs...)
}

// lastLine is s's last non-empty line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
