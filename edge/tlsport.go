package edge

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// sortTLS sorts a TLS-port connection, raw, on the goroutine the accept
// loop started for it: passthrough by the ClientHello's server name, else
// termination and ALPN.
func (e *Edge) sortTLS(raw net.Conn) {
	defer e.wg.Done()
	// One deadline bounds the whole handshake, reads and writes, from
	// the first byte to the client's Finished (client_header_timeout).
	deadline := time.Now().Add(e.timeout)
	if err := raw.SetDeadline(deadline); err != nil {
		e.handshakeFailed(raw, err, nil, deadline)
		return
	}
	sni, head, err := peekHello(raw)
	if err != nil {
		e.handshakeFailed(raw, err, head, deadline)
		return
	}
	rc := NewReplayConn(raw, head)
	if e.cfg.Passthrough != nil && e.cfg.ServePassthrough != nil && e.cfg.Passthrough(sni) {
		if err := raw.SetDeadline(time.Time{}); err != nil {
			e.handshakeFailed(raw, err, nil, deadline)
			return
		}
		e.serve(raw, protoPassthrough, func() { e.cfg.ServePassthrough(rc, sni) })
		return
	}
	var cfg *tls.Config
	if e.cfg.TLS != nil {
		cfg = e.cfg.TLS()
	}
	if cfg == nil {
		e.handshakeFailed(raw, errNoConfig, nil, deadline)
		return
	}
	w := &alertWatch{}
	rc.watch = w
	tc := tls.Server(rc, cfg)
	err = tc.Handshake()
	rc.watch = nil
	if err == nil {
		err = raw.SetDeadline(time.Time{})
	}
	if err != nil {
		e.handshakeFailed(raw, w.withAlert(err), nil, deadline)
		return
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		e.deliver(raw, tc)
		return
	}
	if e.cfg.H2 == nil {
		e.handshakeFailed(raw, errNoH2, nil, deadline)
		return
	}
	e.serve(raw, protoH2, func() { e.cfg.H2(tc, true) })
}

var (
	errNoConfig = errors.New("edge: no TLS configuration")
	errNoH2     = errors.New("edge: ALPN h2 negotiated but no HTTP/2 handler")
	// errHelloRead ends the handshake peekHello runs, once the
	// ClientHello is parsed.
	errHelloRead = errors.New("edge: ClientHello read")
)

// handshakeFailed counts and logs a failed handshake on raw, answers
// plain HTTP with 400, and closes raw. head is what was read of it.
func (e *Edge) handshakeFailed(raw net.Conn, err error, head []byte, deadline time.Time) {
	r := reason(err)
	if e.isClosed() {
		r = reasonShutdown
	}
	e.m.handshakeError(r)
	e.cfg.Log.Debug().Err(err).Str("reason", r).Stringer("remote", raw.RemoteAddr()).Msg("TLS handshake failed")
	// A TLS connection starts with a handshake record, type 22 (RFC 8446
	// §5.1); another first byte is most likely a plain HTTP request.
	if r == reasonNotTLS && len(head) > 0 && head[0] != 22 {
		answerPlain(raw, deadline)
	}
	e.drop(raw)
}

// peekHello reads the ClientHello off c without answering it, and
// returns its server name (SNI) and the bytes read, to be replayed to
// whoever takes the connection.
//
// crypto/tls parses the ClientHello, not a parser of this package's
// (there are extensions, GREASE, ECH, records split or coalesced: let the
// library that terminates TLS decide what a ClientHello says). A
// tls.Server runs over a conn that records what it reads and writes
// nothing; GetConfigForClient, called once the ClientHello is parsed and
// before anything is sent, takes the server name and fails the handshake.
// The alert crypto/tls then sends goes nowhere, and the client has seen
// nothing: the connection can still be terminated, or passed through.
func peekHello(c net.Conn) (sni string, head []byte, err error) {
	r := &helloReader{Conn: c}
	seen := false
	err = tls.Server(r, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni, seen = h.ServerName, true
			return nil, errHelloRead
		},
	}).Handshake()
	if seen {
		return sni, r.buf, nil
	}
	// Not a ClientHello: the alert crypto/tls meant for the client
	// (decode_error, protocol_version...) names why.
	return "", r.buf, r.watch.withAlert(err)
}

// helloReader is the connection peekHello's handshake runs over: reads
// come from the client and are recorded, writes go nowhere.
type helloReader struct {
	net.Conn
	buf   []byte
	watch alertWatch
}

func (r *helloReader) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.buf = append(r.buf, b[:n]...)
	return n, err
}

func (r *helloReader) Write(b []byte) (int, error) {
	r.watch.sawWrite(b)
	return 0, errHelloRead
}

func (r *helloReader) Close() error { return nil }

// The answer to plain HTTP on the TLS port (as net/http's server gives).
const plainBody = "This port speaks HTTPS: send the request to an https:// URL.\n"

var plainAnswer = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(plainBody)) + "\r\n\r\n" + plainBody

// Lingering close of the answer to plain HTTP: at most this long (and
// never past the handshake's deadline), and this many bytes.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 1 << 20
)

// answerPlain answers 400 on c, which carried plain HTTP, then closes its
// sending side and reads what the client still sends until it closes:
// closing with the rest of a request unread would reset the connection,
// and a reset can destroy the answer before the client reads it (RFC 9112
// §9.6). The caller closes c.
func answerPlain(c net.Conn, deadline time.Time) {
	if _, err := io.WriteString(c, plainAnswer); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	if d := time.Now().Add(lingerTime); d.Before(deadline) {
		deadline = d
	}
	_ = c.SetReadDeadline(deadline)
	_, _ = io.Copy(io.Discard, io.LimitReader(c, lingerBytes))
}
