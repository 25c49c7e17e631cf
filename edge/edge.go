// Package edge sits between Agimo's raw listeners and its front ends: it
// sorts each accepted client connection by protocol before any front end
// reads it (issue 11).
//
// On the plain port (NewPlain) a connection that opens with the HTTP/2
// connection preface (RFC 9113 §3.4, h2c with prior knowledge) goes to
// Config.H2; any other goes, untouched, to the HTTP/1.x listener H1 that
// the fasthttp front end serves. On the TLS port (NewTLS) the ClientHello
// is read without answering it: a server name that Config.Passthrough
// claims goes, ClientHello first, to Config.ServePassthrough, unterminated;
// the others are terminated with Config.TLS and sorted by ALPN, "h2" to
// Config.H2 and the rest to H1.
//
// The accept loop never waits on a client: each connection is sorted on a
// goroutine of its own, bounded by Config.HandshakeTimeout, which goes on
// to run H2 or ServePassthrough. The Edge owns these goroutines: Close
// stops accepting and closes the connections still being sorted, Shutdown
// also closes, after a grace period, those whose handler has not returned,
// and Wait returns once every goroutine has.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
)

// Config is what an Edge hands connections to.
type Config struct {
	// TLS returns the configuration of each handshake on the TLS port; it
	// is called per handshake, so a rotated certificate serves the next
	// one. It should offer ALPN "h2" and "http/1.1" (NextProtos) and TLS
	// 1.2 at least; the edge does not change it. Without it (or if it
	// returns nil), every handshake not passed through fails.
	TLS func() *tls.Config
	// HandshakeTimeout bounds the sorting of a connection: on the plain
	// port until its first bytes tell HTTP/1.x from HTTP/2, on the TLS
	// port the whole handshake (client_header_timeout). Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// H2 serves one HTTP/2 connection: tls is false for h2c (the preface
	// is still to be read from c), true for ALPN "h2" (c is a *tls.Conn).
	// It runs on a goroutine the Edge owns and waits for, so it must
	// return once c is closed. From the call on, c is H2's to close. If
	// nil, HTTP/2 connections are closed.
	H2 func(c net.Conn, tls bool)
	// Passthrough reports whether a TLS connection for server name sni
	// is passed through unterminated. Nil: none is.
	Passthrough func(sni string) bool
	// ServePassthrough takes such a connection: c replays the ClientHello
	// before the rest of the client's bytes (it is a *ReplayConn: Detach
	// gives the ClientHello and the socket apart, for a splice). Like H2
	// it runs on a goroutine the Edge owns, and c is its to close.
	ServePassthrough func(c net.Conn, sni string)
	// Metrics receives the edge's counters; nil keeps them private.
	Metrics *metrics.Set
	Log     zerolog.Logger
}

// DefaultHandshakeTimeout is nginx's default client_header_timeout.
const DefaultHandshakeTimeout = 60 * time.Second

// Edge sorts the connections of one listener. Create it with NewPlain or
// NewTLS, run Serve, and have the HTTP/1.x front end serve H1().
type Edge struct {
	ln      net.Listener
	cfg     Config
	tls     bool
	timeout time.Duration
	h1      *h1Listener
	m       *edgeMetrics

	mu     sync.Mutex
	closed bool
	done   chan struct{} // closed by Close
	// sorting holds the sockets of the connections being sorted, serving
	// those whose H2 or ServePassthrough call has not returned: what
	// Close and Shutdown close.
	sorting map[net.Conn]struct{}
	serving map[net.Conn]struct{}
	wg      sync.WaitGroup // Serve and every connection's goroutine
}

// NewPlain returns an Edge for the plain HTTP port: h2c with prior
// knowledge goes to H2, HTTP/1.x to H1.
func NewPlain(ln net.Listener, cfg Config) *Edge { return newEdge(ln, cfg, false) }

// NewTLS returns an Edge for the TLS port.
func NewTLS(ln net.Listener, cfg Config) *Edge { return newEdge(ln, cfg, true) }

func newEdge(ln net.Listener, cfg Config, isTLS bool) *Edge {
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	e := &Edge{
		ln:      ln,
		cfg:     cfg,
		tls:     isTLS,
		timeout: cfg.HandshakeTimeout,
		done:    make(chan struct{}),
		sorting: make(map[net.Conn]struct{}),
		serving: make(map[net.Conn]struct{}),
		m:       newEdgeMetrics(cfg.Metrics),
	}
	if e.timeout <= 0 {
		e.timeout = DefaultHandshakeTimeout
	}
	e.h1 = &h1Listener{ch: make(chan net.Conn), closed: make(chan struct{}), addr: ln.Addr(), accepted: e.m.conns[protoH1]}
	return e
}

// H1 is the listener of the HTTP/1.x connections, for the fasthttp front
// end's Serve. On the plain port it yields the accepted connections
// themselves, nothing read from them (see sortPlain); on the TLS port,
// the *tls.Conn after its handshake (ConnectionState tells the front end
// the request came over TLS). Closing it refuses, by closing them, the
// connections sorted afterwards; the Edge keeps accepting until Close.
func (e *Edge) H1() net.Listener { return e.h1 }

// Addr is the address of the listener the Edge accepts on.
func (e *Edge) Addr() net.Addr { return e.ln.Addr() }

// Serve accepts connections until Close, and sorts each on a goroutine
// of its own. It returns nil after Close, or the listener's error.
func (e *Edge) Serve() error {
	if !e.add() {
		return nil
	}
	defer e.wg.Done()
	var delay time.Duration
	for {
		c, err := e.ln.Accept()
		if err != nil {
			if e.isClosed() {
				return nil
			}
			if !temporary(err) {
				return fmt.Errorf("edge accept: %w", err)
			}
			// Out of descriptors or memory: back off as net/http does,
			// rather than spin, and try again.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			e.cfg.Log.Warn().Err(err).Dur("retry_in", delay).Msg("accepting a connection")
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-e.done:
				t.Stop()
				return nil
			}
			continue
		}
		delay = 0
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			c.Close()
			return nil
		}
		e.sorting[c] = struct{}{}
		e.wg.Add(1)
		e.mu.Unlock()
		if e.tls {
			go e.sortTLS(c)
		} else {
			go e.sortPlain(c)
		}
	}
}

// temporary reports an accept error worth retrying: the process or the
// system out of descriptors or buffers, or a connection aborted before it
// was accepted.
func temporary(err error) bool {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en.Temporary() || en == syscall.ENOBUFS || en == syscall.ENOMEM
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close stops accepting, closes the connections still being sorted and
// the H1 listener. It does not close the connections already handed to
// H2 or ServePassthrough, so that their front ends can drain them (see
// Shutdown); those already accepted from H1 are the front end's.
func (e *Edge) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.done)
	for c := range e.sorting {
		c.Close()
	}
	e.mu.Unlock()
	e.h1.Close()
	return e.ln.Close()
}

// Shutdown closes the Edge (Close), waits until every H2 and
// ServePassthrough call has returned or ctx is done, then closes the
// connections of the calls still running and waits for them too. It
// returns ctx's error if it had to close any.
//
// It sends HTTP/2 connections nothing: their server drains them. With
// x/net/http2, configure the http2.Server once with the http.Server hs
// whose settings it takes (http2.ConfigureServer(hs, h2s)), serve each
// connection in H2 with h2s.ServeConn(c, &http2.ServeConnOpts{Handler:
// h}) — no BaseConfig: from Go 1.27 ServeConn serves a connection with a
// BaseConfig under a one-off copy of it, out of hs's reach — and at
// shutdown call Close, then hs.Shutdown(ctx), which has each connection
// h2s serves send GOAWAY (RFC 9113 §6.8) and close once its streams are
// done (with Go 1.26 it returns at once: hs tracks no connection of its
// own), then Shutdown(ctx) to wait for them, closing at ctx's end those
// still open. TestShutdownDrainsH2 does exactly this.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.Close()
	waited := make(chan struct{})
	go func() { e.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
	}
	e.mu.Lock()
	for c := range e.serving {
		c.Close()
	}
	e.mu.Unlock()
	<-waited
	return ctx.Err()
}

// Wait returns once the Edge is closed and Serve and every goroutine it
// started have returned.
func (e *Edge) Wait() {
	<-e.done
	e.wg.Wait()
}

// add counts a goroutine in wg unless the Edge is closed, so that no Add
// races with Wait (which starts only after Close).
func (e *Edge) add() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

func (e *Edge) isClosed() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// drop closes raw, a connection that could not be sorted, and forgets it.
func (e *Edge) drop(raw net.Conn) {
	raw.Close()
	e.mu.Lock()
	delete(e.sorting, raw)
	e.mu.Unlock()
}

// serve runs fn, a handler taking over c, on the sorting goroutine, with
// raw (c's socket) moved from the sorting set to the serving set for the
// duration of the call. Once fn returns, c is the handler's: the Edge
// forgets it without closing it (the handler may have handed it on).
func (e *Edge) serve(raw net.Conn, protocol string, fn func()) {
	e.mu.Lock()
	delete(e.sorting, raw)
	if e.closed {
		// Close has closed raw while it was being sorted.
		e.mu.Unlock()
		raw.Close()
		e.m.unsorted(reasonShutdown)
		return
	}
	e.serving[raw] = struct{}{}
	e.mu.Unlock()
	e.m.connection(protocol)
	fn()
	e.mu.Lock()
	delete(e.serving, raw)
	e.mu.Unlock()
}

// deliver hands c, an HTTP/1.x connection over socket raw, to whoever
// accepts from H1, or closes it if H1 is closed first.
func (e *Edge) deliver(raw, c net.Conn) {
	select {
	case e.h1.ch <- c:
		e.mu.Lock()
		delete(e.sorting, raw)
		e.mu.Unlock()
	case <-e.h1.closed:
		e.drop(raw)
		e.m.unsorted(reasonShutdown)
	}
}

// h1Listener is the listener of the HTTP/1.x connections: Accept takes
// them from the sorting goroutines, one at a time (a goroutine waits
// until its connection is taken, or the listener closed).
type h1Listener struct {
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
	addr   net.Addr
	// accepted counts the connections taken, before the front end
	// serves them.
	accepted *metrics.Counter
}

func (l *h1Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		l.accepted.Inc()
		return c, nil
	case <-l.closed:
		// fasthttp's Serve recognises this error as a clean close.
		return nil, net.ErrClosed
	}
}

func (l *h1Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *h1Listener) Addr() net.Addr { return l.addr }
