package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
)

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &ca{cert: cert, key: key, pool: pool, pem: pemBlock("CERTIFICATE", der)}
}

// leaf returns a certificate for names signed by c.
func (c *ca) leaf(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// rig is an Edge on a loopback listener, with the test front ends the
// lead wires for real: fasthttp serving H1, x/net/http2 serving H2.
type rig struct {
	e    *Edge
	addr string
	set  *metrics.Set
	h1   *fasthttp.Server
	h2   *http2.Server
	hs   *http.Server // the server h2 is configured with: its Shutdown sends GOAWAY
	wg   sync.WaitGroup
	// h2Gate, if set, holds each HTTP/2 request of path /hold until closed.
	h2Gate chan struct{}
	h2In   chan struct{} // told when an HTTP/2 request of path /hold arrives
	once   sync.Once
}

type rigOpts struct {
	tls     bool
	timeout time.Duration
	cert    *tls.Certificate
	// rotate, if set, serves the handshakes after the first.
	rotate *tls.Certificate
	// passthrough: SNI names passed through to backend's address.
	passthrough map[string]string
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{set: metrics.NewSet(), h2In: make(chan struct{}, 16)}
	h2h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/hold" && r.h2Gate != nil {
			r.h2In <- struct{}{}
			<-r.h2Gate
		}
		body, _ := io.ReadAll(req.Body)
		fmt.Fprintf(w, "h2 proto=%s tls=%v host=%s path=%s body=%s", req.Proto, req.TLS != nil, req.Host, req.URL.Path, body)
	})
	r.hs = &http.Server{Handler: h2h}
	r.h2 = &http2.Server{}
	// Once: hs.Shutdown then runs the hook that sends every connection
	// r.h2 serves a graceful GOAWAY.
	if err := http2.ConfigureServer(r.hs, r.h2); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		HandshakeTimeout: o.timeout,
		Metrics:          r.set,
		Log:              zerolog.New(io.Discard),
		H2: func(c net.Conn, _ bool) {
			// No BaseConfig: with one, x/net/http2 (Go 1.27 and later)
			// serves the connection under a one-off copy of it, out of
			// reach of hs.Shutdown.
			r.h2.ServeConn(c, &http2.ServeConnOpts{Handler: h2h})
		},
	}
	if o.tls {
		var calls atomic.Int32
		cfg.TLS = func() *tls.Config {
			cert := *o.cert
			if calls.Add(1) > 1 && o.rotate != nil {
				cert = *o.rotate
			}
			return &tls.Config{
				Certificates: []tls.Certificate{cert},
				MinVersion:   tls.VersionTLS12,
				NextProtos:   []string{"h2", "http/1.1"},
			}
		}
	}
	if o.passthrough != nil {
		cfg.Passthrough = func(sni string) bool { return o.passthrough[sni] != "" }
		cfg.ServePassthrough = func(c net.Conn, sni string) { splice(c, o.passthrough[sni]) }
	}
	if o.tls {
		r.e = NewTLS(ln, cfg)
	} else {
		r.e = NewPlain(ln, cfg)
	}
	r.addr = ln.Addr().String()
	r.h1 = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			fmt.Fprintf(ctx, "h1 tls=%v conn=%T host=%s path=%s body=%s", ctx.IsTLS(), ctx.Conn(), ctx.Host(), ctx.Path(), ctx.PostBody())
		},
		Logger: quiet{},
		// fasthttp's worker cleaner outlives Shutdown by up to this
		// long: keep it short for the goroutine counts.
		MaxIdleWorkerDuration: 20 * time.Millisecond,
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		if err := r.e.Serve(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		if err := r.h1.Serve(r.e.H1()); err != nil {
			t.Errorf("fasthttp Serve: %v", err)
		}
	}()
	t.Cleanup(r.stop)
	return r
}

// stop drains the rig as the lead would: edge closed, GOAWAY to the
// HTTP/2 connections, the front ends shut down, then what is left closed.
func (r *rig) stop() { r.once.Do(r.drain) }

func (r *rig) drain() {
	r.e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.hs.Shutdown(ctx)
	_ = r.h1.ShutdownWithContext(ctx)
	_ = r.e.Shutdown(ctx)
	r.wg.Wait()
}

// sorting returns the number of connections being sorted.
func (r *rig) sorting() int {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	return len(r.e.sorting)
}

func (r *rig) counter(name string) uint64 { return r.set.GetOrCreateCounter(name).Get() }

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// splice is the test's ServePassthrough: it dials backend and copies both
// ways, the ClientHello first (c replays it).
func splice(c net.Conn, backend string) {
	defer c.Close()
	up, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer up.Close()
	head, raw := c.(*ReplayConn).Detach()
	if _, err := up.Write(head); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(raw, up)
		raw.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(up, raw)
	up.(*net.TCPConn).CloseWrite()
	<-done
}

// waitGoroutines polls until at most want goroutines run.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines = %d; want at most %d\n%s", n, want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
