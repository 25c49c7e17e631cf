package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"syscall"
)

// Reasons a server handshake fails, for the TLS listener's
// agimo_tls_handshake_errors_total{reason}: a small fixed set, so the
// metric's cardinality is bounded whatever clients send.
const (
	// ReasonTimeout: the client did not finish the handshake in time.
	ReasonTimeout = "timeout"
	// ReasonEOF: the client closed or reset the connection mid-handshake
	// (port scanners, TCP health checks, clients giving up).
	ReasonEOF = "eof"
	// ReasonNotTLS: the first bytes are not a TLS record, typically plain
	// HTTP sent to the TLS port (the listener answers it 400).
	ReasonNotTLS = "not_tls"
	// ReasonProtocolVersion: the client offers only versions below TLS
	// 1.2, or refused ours (protocol_version alert, RFC 8446 §6.2).
	ReasonProtocolVersion = "protocol_version"
	// ReasonNoSharedCipher: no cipher suite or key exchange in common.
	ReasonNoSharedCipher = "no_shared_cipher"
	// ReasonNoApplicationProtocol: the client's ALPN list has neither h2
	// nor http/1.1 (RFC 7301 §3.2).
	ReasonNoApplicationProtocol = "no_application_protocol"
	// ReasonBadCertificate: the client rejected the certificate it got
	// (unknown CA, expired, wrong name...): the alert it sent says so.
	ReasonBadCertificate = "bad_certificate"
	// ReasonNoCertificate: no configured certificate is loaded yet.
	ReasonNoCertificate = "no_certificate"
	// ReasonOther: anything else (malformed messages, other alerts).
	ReasonOther = "other"
)

// Reasons lists every value HandshakeReason returns, so a caller can
// export each counter at 0 from the start.
var Reasons = []string{
	ReasonTimeout, ReasonEOF, ReasonNotTLS, ReasonProtocolVersion, ReasonNoSharedCipher,
	ReasonNoApplicationProtocol, ReasonBadCertificate, ReasonNoCertificate, ReasonOther,
}

// TLS alert descriptions (RFC 8446 §6, RFC 5246 §7.2, RFC 7301 §3.2);
// crypto/tls does not export its constants.
const (
	alertHandshakeFailure       = 40
	alertBadCertificate         = 42
	alertUnsupportedCertificate = 43
	alertCertificateRevoked     = 44
	alertCertificateExpired     = 45
	alertCertificateUnknown     = 46
	alertUnknownCA              = 48
	alertProtocolVersion        = 70
	alertInsufficientSecurity   = 71
	alertNoApplicationProtocol  = 120
)

// HandshakeReason classifies the error of a failed server handshake
// (tls.Conn.Handshake or HandshakeContext) as one of Reasons; "" for nil.
func HandshakeReason(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, ErrNoCertificate) {
		return ReasonNoCertificate
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return ReasonNotTLS
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ReasonTimeout
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return ReasonEOF
	}
	if a, ok := alertOf(err); ok {
		return alertReason(a)
	}
	// Failures detected by our side come back as crypto/tls's own error
	// strings (the alert it sent is not in the error on a TCP
	// connection, only on QUIC); the table test, built from real
	// handshakes, catches a Go release that rewords one.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "tls: client offered only unsupported versions"):
		return ReasonProtocolVersion
	case strings.Contains(msg, "tls: no cipher suite supported by both client and server"),
		strings.Contains(msg, "tls: no key exchanges supported by both client and server"):
		return ReasonNoSharedCipher
	case strings.Contains(msg, "tls: client requested unsupported application protocols"):
		return ReasonNoApplicationProtocol
	}
	return ReasonOther
}

// alertOf returns the TLS alert in err: a tls.AlertError (QUIC), or an
// alert the peer sent, which crypto/tls returns as a net.OpError "remote
// error" around its unexported alert type (a uint8).
func alertOf(err error) (tls.AlertError, bool) {
	if a, ok := errors.AsType[tls.AlertError](err); ok {
		return a, true
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" && op.Err != nil {
		if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 {
			return tls.AlertError(v.Uint()), true
		}
	}
	return 0, false
}

func alertReason(a tls.AlertError) string {
	switch a {
	case alertBadCertificate, alertUnsupportedCertificate, alertCertificateRevoked,
		alertCertificateExpired, alertCertificateUnknown, alertUnknownCA:
		return ReasonBadCertificate
	case alertProtocolVersion:
		return ReasonProtocolVersion
	case alertHandshakeFailure, alertInsufficientSecurity:
		return ReasonNoSharedCipher
	case alertNoApplicationProtocol:
		return ReasonNoApplicationProtocol
	}
	return ReasonOther
}
