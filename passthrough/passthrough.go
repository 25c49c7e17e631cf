// Package passthrough is the front end of tls_passthrough services: a TLS
// connection on the TLS port whose SNI names such a service is not
// terminated. The edge has read its ClientHello (without answering it);
// this package routes it by SNI, parks it until the service is ready
// (waking it if asked), then splices the raw bytes, ClientHello first, to
// a ready endpoint, so the app keeps its own certificate and mutual TLS
// works end to end. Each connection counts as one request in
// agimo_requests_total and agimo_active_requests, and as a tunnel in
// agimo_open_tunnels.
package passthrough

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/tunnel"
	"github.com/agimo/agimo/upstream"
	"github.com/agimo/agimo/watch"
)

// Server relays passthrough connections. Its tunnels close at Shutdown.
type Server struct {
	core    *core.Core
	tunnels *tunnel.Registry
}

// New returns a Server on c.
func New(c *core.Core) *Server {
	return &Server{core: c, tunnels: tunnel.NewRegistry()}
}

// Wants reports whether sni names a tls_passthrough service, for the
// edge to decide before it would terminate the connection.
func (s *Server) Wants(sni string) bool {
	r := s.lookup(sni)
	return r != nil
}

func (s *Server) lookup(sni string) *route.Route {
	if sni == "" {
		return nil
	}
	// By host alone: the path is inside the encryption (route.Table.Passthrough).
	return s.core.Routes().Passthrough([]byte(sni))
}

// headReader is the edge's connection with the ClientHello still to be
// replayed (edge.ReplayConn).
type headReader interface {
	Detach() ([]byte, net.Conn)
}

// Serve relays c, whose ClientHello named sni, until either side closes
// it. It runs on the edge's goroutine for the connection, which the edge
// waits for.
func (s *Server) Serve(c net.Conn, sni string) {
	r := s.lookup(sni) // again: a reload may have come in between
	if r == nil {
		c.Close()
		return
	}
	var hello []byte
	client := c
	if hr, ok := c.(headReader); ok {
		hello, client = hr.Detach()
	}
	r.CountRequest()
	defer r.EndRequest()
	// One access log line per connection, at its end. Nothing inside the
	// TLS is seen: no method, path or status; "status" is 0 for a relay
	// that ran, and the reason says why one did not.
	e := accesslog.Entry{Start: time.Now(), Client: client.RemoteAddr(), Host: []byte(sni),
		Proto: accesslog.ProtoPassthrough, Route: r.Host}
	defer func() { s.core.AccessLog.Log(&e) }()
	t, err := s.tunnels.Open(client)
	if err != nil {
		e.Status, e.Reason = 503, "shutdown"
		client.Close()
		return
	}
	defer t.End()

	deadline := time.Now().Add(r.Timeout)
	st := r.Ready.State()
	if !st.Ready {
		// Nothing can be answered inside TLS that is not ours: a park
		// that fails closes the connection.
		gone, stop := park.WatchClose(client)
		parkStart := time.Now()
		st, err = s.core.Waiter.Wait(r, deadline, gone, nil)
		e.Parked = time.Since(parkStart)
		stop()
		if err != nil {
			e.Status, e.Reason = 503, parkReason(err)
			if err == park.ErrClientGone {
				e.Status = 499
			}
			s.parkFailed(r, err)
			return
		}
	}
	up, err := s.dial(t, r, st, deadline, &e.Upstream)
	if err == nil {
		err = t.SetUpstream(up)
	}
	if err != nil {
		e.Status, e.Reason = 502, "upstream_"+upstream.Kind(err)
		if t.Context().Err() == nil {
			r.M.Errs[upstream.Kind(err)].Inc()
			s.core.Log.Debug().Str("host", r.Host).Err(err).Msg("passthrough: upstream failed")
		} else {
			e.Status, e.Reason = 503, "shutdown"
		}
		return
	}
	r.ReadyCold()
	r.FirstByte()
	m := stats.NewTunnel(s.core.Metrics, r.Host)
	m.Open.Inc()
	defer m.Open.Dec()
	start := time.Now()
	var in, out atomic.Int64
	err = t.Relay(hello, nil, tunnel.Options{
		Up:          func(n int64) { m.Up.AddInt64(n); in.Add(n) },
		Down:        func(n int64) { m.Down.AddInt64(n); out.Add(n) },
		IdleTimeout: r.Svc.TunnelIdleTimeout.Duration})
	e.BytesIn, e.BytesOut = in.Load(), out.Load()
	s.core.Log.Debug().Str("host", r.Host).Dur("duration", time.Since(start)).AnErr("reason", err).Msg("passthrough ended")
}

// parkReason is the access log's reason for a park that failed.
func parkReason(err error) string {
	switch err {
	case park.ErrFull:
		return "max_parked"
	case park.ErrStopping:
		return "shutdown"
	case park.ErrClientGone:
		return "client_gone"
	}
	return "park_timeout"
}

func (s *Server) parkFailed(r *route.Route, err error) {
	switch err {
	case park.ErrFull:
		r.M.Rejected.Inc()
	case park.ErrTimeout:
		r.M.Timeouts.Inc()
	}
	s.core.Log.Debug().Str("host", r.Host).Err(err).Msg("passthrough: park ended without readiness")
}

// dial connects to a ready endpoint, retrying a refused connection until
// deadline (core.Attempt).
func (s *Server) dial(t *tunnel.Tunnel, r *route.Route, st *watch.State, deadline time.Time, tried *string) (net.Conn, error) {
	d := net.Dialer{Timeout: upstream.DialTimeout}
	var c net.Conn
	err := s.core.Attempt(r, st, deadline, func() (*watch.State, error) { return s.core.Waiter.Wait(r, deadline, nil, nil) },
		func(addr string) error {
			*tried = addr
			var err error
			if c, err = d.DialContext(t.Context(), "tcp", addr); err != nil && !upstream.IsRefused(err) {
				return fmt.Errorf("dial %s: %w", addr, err)
			}
			return err
		})
	return c, err
}

// Shutdown closes the open tunnels (a relay has no end of its own to wait
// for) and waits for their goroutines or ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.tunnels.Close()
	return s.tunnels.Wait(ctx)
}
