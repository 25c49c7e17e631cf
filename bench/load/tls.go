package load

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// clientTLS is the client side of every TLS mode: certificates verified
// against cfg.CAFile, the server name (SNI) taken from cfg.Host, TLS 1.2 or
// 1.3 as the issue asks of Agimo.
//
// Key exchange X25519 only: Go offers the hybrid X25519MLKEM768 first, which
// Go's server (Agimo) would pick and OpenSSL 3.0's (nginx) cannot, so the
// two proxies would be compared on different key exchanges, the hybrid's
// more expensive.
func clientTLS(cfg *Config) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
	tc.ServerName = cfg.Host
	if h, _, err := net.SplitHostPort(cfg.Host); err == nil {
		tc.ServerName = h
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", cfg.CAFile)
		}
	}
	return tc, nil
}

// Handshakes measures new TLS connections: each op dials, completes a full
// TLS 1.3 handshake (no session cache, so never resumed), sends one GET
// with "Connection: close", reads the response and closes. Latency is the
// whole op.
func Handshakes(ctx context.Context, cfg Config) (*Result, error) {
	cfg.Mode = ModeHandshake
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("target %q: want https://host:port/path", cfg.URL)
	}
	if cfg.Host == "" {
		cfg.Host = u.Host
	}
	tc, err := clientTLS(&cfg)
	if err != nil {
		return nil, err
	}
	tc.MinVersion = tls.VersionTLS13
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + cfg.Host + "\r\nUser-Agent: agimo-bench\r\nConnection: close\r\n\r\n"
	return run(ctx, &cfg, func(ctx context.Context, c *clock, w *worker) {
		d := &net.Dialer{Timeout: cfg.Timeout}
		br := bufio.NewReaderSize(nil, 4096)
		pace := newPacer(&cfg, c, w.index)
		for {
			due, ok := pace.wait(ctx)
			if !ok {
				return
			}
			n, err := handshakeOnce(ctx, d, u.Host, tc, req, br, earliest(time.Now().Add(cfg.Timeout), c.end.Add(endGrace)))
			done := time.Now()
			if done.After(c.end) {
				return
			}
			if !c.measuring(due) {
				continue
			}
			if err != nil {
				w.fail(err)
				sleepCtx(ctx, errBackoff)
				continue
			}
			w.bytes += n
			w.hist.Record(done.Sub(due))
			w.ops.Add(1)
		}
	}), nil
}

// handshakeOnce is one op of Handshakes; it returns the body bytes read.
func handshakeOnce(ctx context.Context, d *net.Dialer, addr string, tc *tls.Config, req string, br *bufio.Reader, deadline time.Time) (int64, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	c := tls.Client(conn, tc)
	if err := c.HandshakeContext(ctx); err != nil {
		return 0, fmt.Errorf("tls handshake: %w", err)
	}
	if c.ConnectionState().DidResume {
		return 0, errors.New("tls session resumed; want a full handshake")
	}
	if _, err := io.WriteString(c, req); err != nil {
		return 0, err
	}
	br.Reset(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return n, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return n, fmt.Errorf("status %d", resp.StatusCode)
	}
	return n, nil
}
