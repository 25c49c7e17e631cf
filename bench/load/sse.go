package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// SSE runs server-sent-event load: each worker requests the stream on its
// keep-alive connection and reads events (blank-line separated) until the
// server ends the stream or MaxEvents arrived (the connection is then
// dropped: an unfinished chunked body cannot be left on a keep-alive
// connection), then requests it again. An op is one stream; its latency is
// the time to the first complete event; Events counts every event.
func SSE(ctx context.Context, cfg Config, maxEvents int) (*Result, error) {
	cfg.Mode = ModeSSE
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("target %q: want http://host:port/path", cfg.URL)
	}
	if cfg.Host == "" {
		cfg.Host = u.Host
	}
	return run(ctx, &cfg, func(ctx context.Context, c *clock, w *worker) {
		hc := &fasthttp.HostClient{
			Addr:                      u.Host,
			MaxConns:                  1,
			MaxIdemponentCallAttempts: 1,
			StreamResponseBody:        true,
			NoDefaultUserAgentHeader:  true,
			MaxIdleConnDuration:       time.Minute,
		}
		defer hc.CloseIdleConnections()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(cfg.URL)
		req.UseHostHeader = true
		req.Header.SetHost(cfg.Host)
		req.Header.Set(fasthttp.HeaderAccept, "text/event-stream")
		buf := make([]byte, 32<<10)
		pace := newPacer(&cfg, c, w.index)
		for {
			due, ok := pace.wait(ctx)
			if !ok {
				return
			}
			deadline := earliest(time.Now().Add(cfg.Timeout), c.end.Add(endGrace))
			first, events, n, err := readStream(hc, req, resp, deadline, maxEvents, buf)
			done := time.Now()
			if done.After(c.end) && err == nil {
				// The stream straddles the end: its events up to the end
				// would count, but its TTFE belongs to the measured
				// window only if the first event came before the end.
				if !first.IsZero() && !first.After(c.end) && c.measuring(due) {
					w.events += events
				}
				return
			}
			if !c.measuring(due) {
				continue
			}
			w.events += events
			w.bytes += n
			if err != nil {
				if c.running(ctx) {
					w.fail(err)
					sleepCtx(ctx, errBackoff)
				}
				continue
			}
			w.hist.Record(first.Sub(due))
			w.ops.Add(1)
		}
	}), nil
}

var errNoEvent = errors.New("stream ended without an event")

// readStream requests one stream and reads it to its end (or maxEvents).
// It returns when the first event was complete, the event count and the
// bytes received.
func readStream(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response,
	deadline time.Time, maxEvents int, buf []byte) (first time.Time, events, n int64, err error) {
	if err := hc.DoDeadline(req, resp, deadline); err != nil {
		return first, 0, 0, err
	}
	defer resp.CloseBodyStream()
	if sc := resp.StatusCode(); sc != fasthttp.StatusOK {
		return first, 0, 0, fmt.Errorf("status %d", sc)
	}
	body := resp.BodyStream()
	if body == nil {
		// A short body that fasthttp read whole with the head.
		body = bytes.NewReader(resp.Body())
	}
	var split eventSplitter
	for maxEvents <= 0 || events < int64(maxEvents) {
		m, rerr := body.Read(buf)
		if m > 0 {
			n += int64(m)
			k := split.count(buf[:m])
			if k > 0 && events == 0 {
				first = time.Now()
			}
			events += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return first, events, n, fmt.Errorf("read stream: %w", rerr)
		}
	}
	if events == 0 {
		return first, 0, n, errNoEvent
	}
	return first, events, n, nil
}

// eventSplitter counts event ends: "\n\n" pairs in the byte stream,
// non-overlapping from the start of each run of newlines, including
// pairs split across reads. Servers that end lines with CRLF are not
// handled: the bench's own upstream and every proxy under test pass LF
// through unchanged.
type eventSplitter struct {
	pending bool // the stream so far ends in an unpaired '\n'
}

func (s *eventSplitter) count(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	k := 0
	if s.pending && b[0] == '\n' {
		k++
		b = b[1:]
		s.pending = false
	}
	k += bytes.Count(b, []byte("\n\n"))
	// Trailing newlines: pairs were taken from the start of the run, so
	// an odd run leaves its last one unpaired. A run covering all of b
	// continues one that the pending flag already resolved above.
	run := len(b) - len(bytes.TrimRight(b, "\n"))
	if run > 0 {
		s.pending = run%2 == 1
	}
	return k
}
