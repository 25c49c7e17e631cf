package load

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

// WS runs WebSocket echo load: each worker opens one WebSocket and sends
// MsgSize-byte binary messages, each after the previous one came back.
// An op is one round trip; Bytes counts the echoed payload.
func WS(ctx context.Context, cfg Config) (*Result, error) {
	cfg.Mode = ModeWS
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("target %q: want ws://host:port/path or http://…", cfg.URL)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	default:
		return nil, fmt.Errorf("target %q: scheme %q: want ws or http", cfg.URL, u.Scheme)
	}
	if cfg.Host == "" {
		cfg.Host = u.Host
	}
	if cfg.MsgSize <= 0 {
		cfg.MsgSize = 64
	}
	msg := make([]byte, cfg.MsgSize)
	rand.Read(msg)
	target := u.String()
	return run(ctx, &cfg, func(ctx context.Context, c *clock, w *worker) {
		buf := make([]byte, cfg.MsgSize)
		pace := newPacer(&cfg, c, w.index)
		// The clock, not ctx, says when the run is over: ctx's deadline
		// timer may fire a little after a dial has already failed on it.
		for c.running(ctx) {
			conn, err := dialWS(ctx, target, cfg.Host, cfg.Timeout)
			if err != nil {
				if c.running(ctx) && c.measuring(time.Now()) {
					w.fail(err)
				}
				sleepCtx(ctx, errBackoff)
				continue
			}
			err = echoLoop(ctx, conn, c, w, pace, msg, buf)
			conn.Close()
			if err != nil && c.running(ctx) {
				if c.measuring(time.Now()) {
					w.fail(err)
				}
				sleepCtx(ctx, errBackoff)
			}
		}
	}), nil
}

func dialWS(ctx context.Context, target, host string, timeout time.Duration) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: 4096, WriteBufferSize: 4096}
	conn, resp, err := d.DialContext(ctx, target, http.Header{"Host": {host}})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket handshake: status %d", resp.StatusCode)
		}
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	return conn, nil
}

// echoLoop sends and receives on one connection until the run ends.
func echoLoop(ctx context.Context, conn *websocket.Conn, c *clock, w *worker, pace *pacer, msg, buf []byte) error {
	// One deadline for the whole run rather than one per message: a
	// per-message deadline costs a timer update per op in every target's
	// measurement, and a hung target still stops the run on time.
	deadline := c.end.Add(endGrace)
	conn.SetReadDeadline(deadline)
	conn.SetWriteDeadline(deadline)
	// Unblock a worker stuck in a read when the run is cut short.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		due, ok := pace.wait(ctx)
		if !ok {
			return nil
		}
		if err := conn.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			return err
		}
		_, r, err := conn.NextReader()
		if err != nil {
			return err
		}
		n, err := io.ReadFull(r, buf)
		if err == nil {
			// The echo must be exactly as long as what was sent.
			if m, _ := r.Read(buf[:1]); m > 0 {
				err = errors.New("echo longer than the message")
			}
		}
		if err != nil {
			return fmt.Errorf("read echo: %w", err)
		}
		done := time.Now()
		if done.After(c.end) {
			return nil
		}
		if c.measuring(due) {
			w.bytes += int64(n)
			w.hist.Record(done.Sub(due))
			w.ops.Add(1)
		}
	}
}
