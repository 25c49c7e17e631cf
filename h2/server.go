// Package h2 is Agimo's HTTP/2 front end, the adapter between
// golang.org/x/net/http2 and the shared core (package core), for h2 over
// TLS (ALPN) and h2c with prior knowledge on the plain port. Each stream
// is one request: routed by its :authority, parked on its own goroutine
// (which x/net/http2 gives every stream) until its service is ready, then
// forwarded over HTTP/1.1 (the core's pools) or h2c (httputil's
// ReverseProxy on the core's h2c transport). Everything HTTP/1.1 gets, it
// gets with the same answers: probes, the waiting page, max_parked,
// Retry-After, wake-up and the same series. A gRPC request that Agimo
// itself refuses gets a gRPC status, not an HTTP error (grpc.go).
package h2

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/core"
)

// Limits per connection. x/net/http2 enforces them and bounds what a
// single connection can make the server do: a stream reset before its
// handler started counts against the connection (rapid reset,
// CVE-2023-44487: "too_many_early_resets" ends it with ENHANCE_YOUR_CALM),
// the header block of a request is bounded by MaxHeaderBytes however
// many CONTINUATION frames carry it (CVE-2024-27316), and queued control
// frames (PING, SETTINGS floods) are capped.
const (
	maxConcurrentStreams = 250     // per connection, as nginx's http2_max_concurrent_streams is 128 and Go's default 250
	maxUploadPerStream   = 1 << 20 // flow-control window a stream may fill before its handler reads
	maxUploadPerConn     = 4 << 20
	idleTimeout          = 75 * time.Second // as the HTTP/1.1 front end's keep-alive
	// maxFrameSize is the largest frame a client may send: the initial
	// SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2, §6.5.2) rather than
	// x/net's 1 MiB. The framer reads a whole frame into one buffer, so
	// this bounds what a frame costs a connection; a HEADERS frame over
	// it is a FRAME_SIZE_ERROR (h2spec 4.2/3 sends one over 16 KiB).
	maxFrameSize = 16 << 10
)

// Server serves HTTP/2 connections. Create it with New, give it
// connections with ServeConn, stop it with Shutdown.
type Server struct {
	core    *core.Core
	log     zerolog.Logger
	metrics *metrics.Set
	maxBody int64
	// sendTimeout is the top-level send_timeout: a connection whose
	// client takes no byte for that long is closed (WriteByteTimeout).
	h2   *http2.Server
	base *http.Server // for graceful shutdown: GOAWAY on every connection

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// New returns a Server on c for cfg.
func New(c *core.Core, cfg *conf.Config) *Server {
	s := &Server{core: c, log: c.Log, metrics: c.Metrics, maxBody: cfg.MaxRequestBody.Bytes,
		conns: make(map[net.Conn]struct{})}
	errs := func(kind string) *metrics.Counter {
		return c.Metrics.GetOrCreateCounter(fmt.Sprintf("agimo_h2_protocol_errors_total{type=%q}", kind))
	}
	s.h2 = &http2.Server{
		MaxConcurrentStreams:         maxConcurrentStreams,
		MaxUploadBufferPerStream:     maxUploadPerStream,
		MaxUploadBufferPerConnection: maxUploadPerConn,
		MaxReadFrameSize:             maxFrameSize,
		IdleTimeout:                  idleTimeout,
		WriteByteTimeout:             cfg.SendTimeout.Duration,
		// A client silent on a connection with streams open is checked with
		// a PING; one that does not answer is gone.
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     10 * time.Second,
		CountError:      func(kind string) { errs(kind).Inc() },
	}
	s.base = &http.Server{
		// SETTINGS_MAX_HEADER_LIST_SIZE, and the bound on a header block
		// read over any number of CONTINUATION frames (RFC 9113 §6.10).
		MaxHeaderBytes: int(cfg.MaxHeaderSize.Bytes),
		ReadTimeout:    0, // streams park: no whole-request deadline
		// x/net/http2 logs each connection error it meets (a client's
		// protocol error, a GOAWAY received) through ErrorLog, by default
		// the standard logger: per-connection lines go to Agimo's log at
		// debug, where they can neither flood it nor break its JSON.
		ErrorLog: log.New(debugWriter{c.Log}, "", 0),
	}
	// Registers the GOAWAY of every connection on s.base.Shutdown.
	_ = http2.ConfigureServer(s.base, s.h2)
	return s
}

// ServeConn serves one HTTP/2 connection until it ends, its preface not
// yet read (for h2c, the edge replays it). tls tells the requests'
// X-Forwarded-Proto. It returns once the connection is done.
func (s *Server) ServeConn(c net.Conn, tls bool) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		s.wg.Done()
	}()
	s.h2.ServeConn(c, &http2.ServeConnOpts{
		// Not cancelled at shutdown: a parked stream must see the core
		// stopping and answer 503, not a client gone.
		Context:    context.WithValue(context.Background(), tlsKey{}, tls),
		BaseConfig: s.base,
		Handler:    s,
	})
}

type tlsKey struct{}

// debugWriter writes each line it is given as one debug entry of log,
// but a handler's panic (a bug, never a client's doing) at error.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	ev := w.log.Debug()
	if strings.HasPrefix(msg, "http2: panic serving") {
		ev = w.log.Error()
	}
	ev.Msg(msg)
	return len(p), nil
}

// Shutdown sends GOAWAY on every connection (RFC 9113 §6.8: streams
// already open finish; parked ones answer 503 as the core is stopping),
// waits for the connections to end or ctx, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true // no new connection
	s.mu.Unlock()
	_ = s.base.Shutdown(ctx) // not serving anything itself: runs the GOAWAY hooks
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
	return fmt.Errorf("shutdown http2: %w", ctx.Err())
}
