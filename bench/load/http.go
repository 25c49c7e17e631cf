package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// errBackoff is how long a worker pauses after a transport error, so a
// target that is down yields a count of errors rather than a busy loop
// that steals the CPU the other targets' runs need.
const errBackoff = 10 * time.Millisecond

// HTTP runs keep-alive HTTP/1.1 load: each worker owns one connection (a
// fasthttp.HostClient limited to one) and sends requests back to back, or
// paced by cfg.Rate. An https:// target is reached over TLS (clientTLS),
// one handshake per connection.
func HTTP(ctx context.Context, cfg Config) (*Result, error) {
	cfg.Mode = ModeHTTP
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %q: want http://host:port/path or https://…", cfg.URL)
	}
	if cfg.Host == "" {
		cfg.Host = u.Host
	}
	var tc *tls.Config
	if u.Scheme == "https" {
		if tc, err = clientTLS(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.BodySize > 0 && cfg.Method == "" {
		cfg.Method = fasthttp.MethodPost
	}
	if cfg.Method == "" {
		cfg.Method = fasthttp.MethodGet
	}
	body := bytes.Repeat([]byte("x"), cfg.BodySize)
	return run(ctx, &cfg, func(ctx context.Context, c *clock, w *worker) {
		hc := &fasthttp.HostClient{
			Addr:     u.Host,
			MaxConns: 1,
			// One attempt: a retry would hide errors and skew latency.
			MaxIdemponentCallAttempts: 1,
			ReadTimeout:               cfg.Timeout,
			WriteTimeout:              cfg.Timeout,
			MaxIdleConnDuration:       time.Minute,
			NoDefaultUserAgentHeader:  true,
			IsTLS:                     tc != nil,
			TLSConfig:                 tc,
		}
		defer hc.CloseIdleConnections()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(cfg.URL)
		req.Header.SetMethod(cfg.Method)
		req.UseHostHeader = true
		req.Header.SetHost(cfg.Host)
		rd := bytes.NewReader(nil)
		pace := newPacer(&cfg, c, w.index)
		for {
			due, ok := pace.wait(ctx)
			if !ok {
				return
			}
			if cfg.BodySize > 0 {
				// A stream, not a byte slice: the client writes it in
				// pieces as a real upload would.
				rd.Reset(body)
				req.SetBodyStream(rd, len(body))
			}
			// Bounded by the run's end too, so a hung target stops the run
			// on time (as errors) instead of holding it for the timeout.
			err := hc.DoDeadline(req, resp, earliest(time.Now().Add(cfg.Timeout), c.end.Add(endGrace)))
			done := time.Now()
			if done.After(c.end) {
				return // finished after the end: neither counted nor an error
			}
			if !c.measuring(due) {
				continue
			}
			switch {
			case err != nil:
				w.fail(err)
				sleepCtx(ctx, errBackoff)
				continue
			case resp.StatusCode() < 200 || resp.StatusCode() > 299:
				w.fail(fmt.Errorf("status %d", resp.StatusCode()))
				continue
			}
			w.bytes += int64(len(resp.Body()))
			w.hist.Record(done.Sub(due))
			w.ops.Add(1)
		}
	}), nil
}

// endGrace is how long past the run's end an op may take before it is
// abandoned.
const endGrace = time.Second

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
