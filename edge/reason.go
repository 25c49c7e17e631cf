package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Reasons a connection failed to be sorted, beside TLS alert names.
const (
	reasonTimeout = "timeout" // nothing decisive within the handshake timeout
	reasonEOF     = "eof"     // the client closed or reset the connection
	reasonNotTLS  = "not_tls" // bytes that are not a TLS record on the TLS port
	reasonOther   = "other"
)

// alertNames maps the text of each TLS alert crypto/tls knows ("tls:
// unknown certificate authority") to a label
// ("unknown_certificate_authority"). Built from tls.AlertError itself, so
// a label says what the error in the debug log says (crypto/tls's words,
// not always RFC 8446 §6's: "protocol version not supported" for
// protocol_version) and its values are bounded: an alert crypto/tls does
// not name ("tls: alert(N)") is not in the table.
var alertNames = func() map[string]string {
	m := make(map[string]string)
	for i := range 256 {
		text := tls.AlertError(i).Error()
		name, ok := strings.CutPrefix(text, "tls: ")
		if !ok || strings.HasPrefix(name, "alert(") {
			continue
		}
		m[text] = strings.ReplaceAll(strings.ToLower(name), " ", "_")
	}
	return m
}()

// reason classifies why sorting a connection, or its TLS handshake,
// failed: a label of agimo_tls_handshake_errors_total and
// agimo_edge_unsorted_total.
func reason(err error) string {
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	var oe *net.OpError
	var ca clearAlert
	switch {
	case errors.As(err, &rh):
		return reasonNotTLS
	case errors.Is(err, os.ErrDeadlineExceeded):
		return reasonTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return reasonEOF
	// An alert the peer sent: crypto/tls returns it as a net.OpError
	// ("remote error") around its unexported alert type, whose text is
	// the one tls.AlertError has.
	case errors.As(err, &oe) && oe.Op == "remote error" && alertNames[oe.Err.Error()] != "":
		return alertNames[oe.Err.Error()]
	// An alert this side sent (withAlert, below).
	case errors.As(err, &ae) && alertNames[ae.Error()] != "":
		return alertNames[ae.Error()]
	// An alert the peer sent in the clear (withAlert, below).
	case errors.As(err, &ca) && alertNames[ca.alert.Error()] != "":
		return alertNames[ca.alert.Error()]
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return reasonTimeout
	}
	return reasonOther
}

// alertWatch sees the bytes crypto/tls writes during a handshake and
// keeps the last alert among them. When the handshake fails on this
// side, crypto/tls sends the peer an alert naming why (RFC 8446 §6) but
// returns an error without it: only QUIC connections get an error that
// wraps a tls.AlertError (crypto/tls conn.go, Conn.handshakeContext). So
// the alert is read off the wire instead: a TLS record is a 5-byte header
// (type, version, length; RFC 8446 §5.1) then its payload, and an alert
// record (type 21) sent before encryption starts carries level and
// description in clear. An alert sent encrypted (TLS 1.3 after the
// ServerHello) is not seen; such a failure keeps its error's reason.
//
// It also follows the records the client sends (sawRead), for the alert a
// client sends in the clear when it rejects the server's certificate:
// OpenSSL's client (curl's) switches to its TLS 1.3 handshake keys only
// after the server's Finished, so the unknown_ca of a client that does
// not trust the certificate arrives unencrypted, and crypto/tls, which
// expects encrypted records by then, fails with "bad record MAC" instead
// of naming it.
type alertWatch struct {
	alert uint8
	seen  bool

	peer     uint8 // the last alert the client sent in the clear
	peerSeen bool
	// The client's record being read: its header so far, the bytes of
	// its payload still to come, and the payload of a clear alert.
	hdr   [5]byte
	nhdr  int
	left  int
	body  [2]byte
	nbody int
}

// sawWrite walks the records in b, one write of crypto/tls (which may
// flush several records at once).
func (w *alertWatch) sawWrite(b []byte) {
	for len(b) >= 5 {
		typ, n := b[0], int(b[3])<<8|int(b[4])
		if typ == 21 && n == 2 && len(b) >= 7 {
			w.alert, w.seen = b[6], true
		}
		if len(b) < 5+n {
			return
		}
		b = b[5+n:]
	}
}

// sawRead follows the client's records across reads (b is one read, in
// order from the connection's first byte) and keeps the last alert sent
// in the clear: a record of type 21 and length 2, level and description
// (RFC 8446 §6). An encrypted alert is longer (TLS 1.2) or of type 23
// (TLS 1.3, §5.2).
func (w *alertWatch) sawRead(b []byte) {
	for len(b) > 0 {
		if w.nhdr < len(w.hdr) {
			n := copy(w.hdr[w.nhdr:], b)
			w.nhdr, b = w.nhdr+n, b[n:]
			if w.nhdr < len(w.hdr) {
				return
			}
			w.left, w.nbody = int(w.hdr[3])<<8|int(w.hdr[4]), 0
		}
		n := min(w.left, len(b))
		if w.clearAlert() {
			w.nbody += copy(w.body[w.nbody:], b[:n])
		}
		w.left, b = w.left-n, b[n:]
		if w.left == 0 {
			if w.clearAlert() {
				w.peer, w.peerSeen = w.body[1], true
			}
			w.nhdr = 0
		}
	}
}

func (w *alertWatch) clearAlert() bool {
	return w.hdr[0] == 21 && w.hdr[3] == 0 && w.hdr[4] == 2
}

// withAlert returns err wrapping the alert seen, if any, as crypto/tls
// does for QUIC ("%w%.0w": the text stays err's), so that reason names it;
// failing that, the alert the client sent in the clear, named in the text.
func (w *alertWatch) withAlert(err error) error {
	switch {
	case w.seen:
		return fmt.Errorf("%w%.0w", err, tls.AlertError(w.alert))
	case w.peerSeen:
		return clearAlert{err: err, alert: tls.AlertError(w.peer)}
	}
	return err
}

// clearAlert is a failed handshake after which the client's last record
// was an alert in the clear: the alert is the reason.
type clearAlert struct {
	err   error
	alert tls.AlertError
}

func (e clearAlert) Error() string {
	return e.err.Error() + " (the client sent, unencrypted: " + e.alert.Error() + ")"
}

func (e clearAlert) Unwrap() error { return e.err }
