package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/certs"
	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/edge"
	"github.com/agimo/agimo/h2"
	"github.com/agimo/agimo/passthrough"
	"github.com/agimo/agimo/proxy"
	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/watch"
)

// servers is everything that serves clients, on one core: the edges that
// accept connections and sort them by protocol, the HTTP/1.1 and HTTP/2
// front ends, TLS passthrough, and the certificate pool.
type servers struct {
	core  *core.Core
	h1    *proxy.Proxy
	h2    *h2.Server
	pass  *passthrough.Server
	certs *certs.Store
	plain *edge.Edge
	tls   *edge.Edge // nil when the TLS port is closed
}

// wantsTLSPort reports whether cfg needs the TLS port: a certificate to
// terminate with, or a service passed through.
func wantsTLSPort(cfg *conf.Config) bool {
	if cfg.HasCertificates() {
		return true
	}
	for _, s := range cfg.Services {
		if s.TLSPassthrough {
			return true
		}
	}
	return false
}

// newServers builds the servers on plainLn and, if not nil, tlsLn.
func newServers(cfg *conf.Config, w *watch.Watcher, client kubernetes.Interface, log zerolog.Logger,
	set *metrics.Set, alog *accesslog.Logger, tracer *tracing.Tracer, plainLn, tlsLn net.Listener) (*servers, error) {
	c, err := core.New(cfg, w, core.Options{
		Log: log, Metrics: set, TrustForwarded: cfg.TrustForwardedHeaders,
		Scaler: watch.NewScaler(client, log), AccessLog: alog, Tracer: tracer,
	})
	if err != nil {
		return nil, err
	}
	s := &servers{core: c, h2: h2.New(c, cfg), pass: passthrough.New(c)}
	if s.h1, err = proxy.New(cfg, w, proxy.Options{Log: log, Core: c}); err != nil {
		_ = c.Close(context.Background())
		return nil, err
	}
	if s.certs, err = certs.New(cfg, client, certs.Options{Log: log, Metrics: set}); err != nil {
		_ = c.Close(context.Background())
		return nil, err
	}
	ecfg := edge.Config{
		HandshakeTimeout: cfg.ClientHeaderTimeout.Duration,
		H2:               s.serveH2,
		Passthrough:      s.pass.Wants,
		ServePassthrough: s.servePassthrough,
		Metrics:          set,
		Log:              log,
	}
	s.plain = edge.NewPlain(plainLn, ecfg)
	if tlsLn != nil {
		ecfg.TLS = func() *tls.Config { return s.certs.TLSConfig() }
		s.tls = edge.NewTLS(tlsLn, ecfg)
	}
	return s, nil
}

// serveH2 and servePassthrough hold a place under max_connections for
// the connection's life, as the HTTP/1.1 front end does for its own.
func (s *servers) serveH2(c net.Conn, tls bool) {
	release, ok := s.h1.Slot()
	if !ok {
		c.Close()
		return
	}
	defer release()
	s.h2.ServeConn(c, tls)
}

func (s *servers) servePassthrough(c net.Conn, sni string) {
	release, ok := s.h1.Slot()
	if !ok {
		c.Close()
		return
	}
	defer release()
	s.pass.Serve(c, sni)
}

// start loads what must be known before the first request: the
// certificates of the Secrets the config names.
func (s *servers) start(ctx context.Context) error { return s.certs.Start(ctx) }

// serve runs the edges and the HTTP/1.1 front end on them in g.
func (s *servers) serve(g *errgroup.Group) {
	for _, e := range []*edge.Edge{s.plain, s.tls} {
		if e == nil {
			continue
		}
		g.Go(e.Serve)
		g.Go(func() error { return s.h1.Serve(e.H1()) })
	}
}

// shutdown stops in order: no new connection; the front ends answer what
// is parked (503) and finish what is in flight, HTTP/2 with GOAWAY; the
// edges' handlers end; then the certificate watches and the core.
func (s *servers) shutdown(ctx context.Context) error {
	edges := []*edge.Edge{s.plain}
	if s.tls != nil {
		edges = append(edges, s.tls)
	}
	for _, e := range edges {
		_ = e.Close()
	}
	errs := []error{s.h1.Shutdown(ctx), s.h2.Shutdown(ctx), s.pass.Shutdown(ctx)}
	for _, e := range edges {
		errs = append(errs, e.Shutdown(ctx))
	}
	s.certs.Stop()
	errs = append(errs, s.core.Close(ctx))
	return errors.Join(errs...)
}

// reload switches routes, then certificates, to cfg (already validated).
// The TLS port opens or closes only at the next restart.
func (s *servers) reload(ctx context.Context, cfg *conf.Config, w *watch.Watcher) error {
	if err := s.core.Reload(ctx, cfg, w); err != nil {
		return err
	}
	return s.certs.Reload(cfg)
}
