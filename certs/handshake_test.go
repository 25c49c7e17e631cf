package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// serverHandshake runs one real server handshake with cfg on loopback
// against client, which does its part on the raw connection, and returns
// the server's error. prepare, if set, adjusts the server's connection
// before the handshake.
func serverHandshake(t *testing.T, cfg *tls.Config, prepare func(net.Conn), client func(net.Conn)) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		if prepare != nil {
			prepare(c)
		}
		errc <- tls.Server(c, cfg).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client(c)
	return <-errc // the goroutine has ended: it sent last
}

// tlsClient returns a client side that handshakes with cfg and closes.
func tlsClient(cfg *tls.Config) func(net.Conn) {
	return func(c net.Conn) {
		tc := tls.Client(c, cfg)
		_ = tc.Handshake() // fails, mostly; the server's error is the point
		tc.Close()
	}
}

// Each reason comes from a real handshake between crypto/tls's client
// (or a raw one) and crypto/tls's server with the Store's config.
func TestHandshakeReason(t *testing.T) {
	p := newPool(t)
	cfg := p.st.TLSConfig()
	empty := newRig(t, service("a.example.com", `tls_secret = "missing"`)) // no certificate loaded
	tests := []struct {
		name    string
		cfg     *tls.Config
		prepare func(net.Conn)
		client  func(net.Conn)
		want    string
	}{
		{"client silent past the deadline", cfg,
			// A deadline already past: the first read times out at once.
			func(c net.Conn) { c.SetDeadline(time.Now().Add(-time.Second)) },
			func(net.Conn) {}, ReasonTimeout},
		{"client closes at once", cfg, nil, func(c net.Conn) { c.Close() }, ReasonEOF},
		{"client closes mid-record", cfg, nil, func(c net.Conn) {
			c.Write([]byte{0x16, 0x03, 0x01, 0x01, 0x00, 0x01}) // a record header promising 256 bytes, and 1
			c.Close()
		}, ReasonEOF},
		{"plain HTTP", cfg, nil, func(c net.Conn) {
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
		}, ReasonNotTLS},
		{"TLS 1.1 only", cfg, nil, tlsClient(&tls.Config{
			ServerName: "a.example.com", InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
		}), ReasonProtocolVersion},
		{"no common cipher suite", cfg, nil, tlsClient(&tls.Config{
			// The test certificates are ECDSA: an RSA-only suite cannot serve them.
			ServerName: "a.example.com", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		}), ReasonNoSharedCipher},
		{"no common ALPN protocol", cfg, nil, tlsClient(&tls.Config{
			ServerName: "a.example.com", InsecureSkipVerify: true, NextProtos: []string{"spdy/3"},
		}), ReasonNoApplicationProtocol},
		{"client rejects the certificate (TLS 1.3)", cfg, nil, tlsClient(&tls.Config{
			ServerName: "a.example.com", RootCAs: newCA(t).pool(), // another CA
		}), ReasonBadCertificate},
		{"client rejects the certificate (TLS 1.2)", cfg, nil, tlsClient(&tls.Config{
			ServerName: "a.example.com", RootCAs: newCA(t).pool(), MaxVersion: tls.VersionTLS12,
		}), ReasonBadCertificate},
		{"no certificate loaded", empty.st.TLSConfig(), nil, tlsClient(&tls.Config{
			ServerName: "a.example.com", InsecureSkipVerify: true,
		}), ReasonNoCertificate},
		{"handshake record with garbage", cfg, nil, func(c net.Conn) {
			c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00}) // an unknown handshake message type
			c.Read(make([]byte, 64))                                              // the server's alert
		}, ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := serverHandshake(t, tt.cfg, tt.prepare, tt.client)
			if err == nil {
				t.Fatal("handshake succeeded; want a failure")
			}
			t.Logf("server error: %v", err)
			if got := HandshakeReason(err); got != tt.want {
				t.Errorf("HandshakeReason(%q (%T)) = %q; want %q", err, err, got, tt.want)
			}
		})
	}
}

// Errors that need no handshake to build.
func TestHandshakeReasonValues(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.DeadlineExceeded, ReasonTimeout},
		{fmt.Errorf("handshake: %w", ErrNoCertificate), ReasonNoCertificate},
		{tls.AlertError(70), ReasonProtocolVersion},
		{tls.AlertError(48), ReasonBadCertificate},
		{errors.New("something new"), ReasonOther},
	}
	for _, tt := range tests {
		if got := HandshakeReason(tt.err); got != tt.want {
			t.Errorf("HandshakeReason(%v) = %q; want %q", tt.err, got, tt.want)
		}
	}
	seen := make(map[string]bool)
	for _, r := range Reasons {
		if seen[r] {
			t.Errorf("Reasons lists %q twice", r)
		}
		seen[r] = true
	}
}
