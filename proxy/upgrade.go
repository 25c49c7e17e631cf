package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/tunnel"
	"github.com/agimo/agimo/upstream"
	"github.com/agimo/agimo/watch"
)

// isUpgrade reports whether the request asks to switch to WebSocket (RFC
// 6455 §4.1: an HTTP/1.1 GET whose Connection has the token "upgrade" and
// whose Upgrade has "websocket"; tokens are case-insensitive and may come
// in comma lists, over several lines). A request with a body is not
// tunnelled: its body bytes would otherwise reach the upstream as tunnel
// data. Other upgrades (h2c) are forwarded as plain requests, their
// Upgrade header stripped as hop-by-hop (issue 3).
func isUpgrade(h *fasthttp.RequestHeader) bool {
	if !h.IsGet() || !h.IsHTTP11() {
		return false
	}
	// fasthttp reports -2 for a request with neither Content-Length nor
	// Transfer-Encoding, which has no body (RFC 9112 §6.3).
	if n := h.ContentLength(); n > 0 || n == -1 {
		return false
	}
	// PeekAll reuses one buffer: finish with the first before the second.
	return hasToken(h.PeekAll(fasthttp.HeaderConnection), "upgrade") &&
		hasToken(h.PeekAll(fasthttp.HeaderUpgrade), "websocket") &&
		// fasthttp reads "Transfer-Encoding: identity" as no body and
		// drops the field; any coding but chunked makes the length
		// unknowable (RFC 9112 §6.3), so no upgrade either.
		!hasRawField(h.RawHeaders(), "Transfer-Encoding")
}

// hasToken reports whether any comma-separated element of lines is tok,
// ignoring case and optional whitespace (SP and HTAB, RFC 9110 §5.6.3).
// A protocol version ("websocket/13") is not the bare token.
func hasToken(lines [][]byte, tok string) bool {
	for _, v := range lines {
		for len(v) > 0 {
			var el []byte
			el, v, _ = bytes.Cut(v, []byte{','})
			if bytes.EqualFold(bytes.Trim(el, " \t"), []byte(tok)) {
				return true
			}
		}
	}
	return false
}

// hasRawField reports whether the raw header block has a field named
// name (case-insensitive).
func hasRawField(raw []byte, name string) bool {
	for len(raw) > 0 {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte{'\n'})
		if k, _, ok := bytes.Cut(line, []byte{':'}); ok && bytes.EqualFold(bytes.Trim(k, " \t"), []byte(name)) {
			return true
		}
	}
	return false
}

// upgrade takes the client connection over for a WebSocket tunnel (issue
// 3). The request head for the upstream is built now, while ctx is the
// handler's; everything else starts in the hijack handler, which fasthttp
// calls on its own goroutine once this handler has returned, with no
// response of its own. It returns true: the tunnel decrements r's active
// gauge when it ends, so an open WebSocket keeps KEDA from scaling its
// app to zero.
func (p *Proxy) upgrade(ctx *fasthttp.RequestCtx, r *route.Route, st *watch.State, deadline time.Time) bool {
	h := &ctx.Request.Header
	// prepareRequest drops Connection and Upgrade as hop-by-hop; they are
	// put back below, Upgrade with exactly the client's tokens.
	proto := bytes.Join(h.PeekAll(fasthttp.HeaderUpgrade), []byte(", "))
	prepareRequest(ctx, r, p.opts.TrustForwarded)
	exchangeOf(ctx).traceUpstream(h)
	head := h.AppendBytes(make([]byte, 0, 1024))
	head = head[:len(head)-2] // reopen the head after its final CRLF
	head = append(head, "Connection: Upgrade\r\nUpgrade: "...)
	head = append(head, proto...)
	head = append(head, "\r\n\r\n"...)

	ctx.HijackSetNoResponse(true)
	handOff(ctx, r.EndRequest)
	ctx.Hijack(func(c net.Conn) { p.startTunnel(ctx, c, r, st, deadline, head) })
	return true
}

// startTunnel runs on fasthttp's hijack goroutine: it dials the upstream
// and relays the handshake, then, if the upstream switched to WebSocket,
// starts the relay on the tunnel's goroutines and returns. ctx is valid
// until then (fasthttp releases a hijacked ctx after the hijack handler),
// which lets the retry path park on it and the error path reuse the usual
// answers. Returning lets fasthttp drop its read buffer (max_header_size)
// and recycle ctx instead of holding them for the tunnel's life: with
// KeepHijackedConns the connection is ours to close, and the tunnel does.
func (p *Proxy) startTunnel(ctx *fasthttp.RequestCtx, hj net.Conn, r *route.Route, st *watch.State, deadline time.Time, head []byte) {
	// The connection's record: hijacked, it serves no other request.
	x := exchangeOf(ctx)
	defer func() {
		if x.status == 0 { // unanswered: the client left, or shutdown
			x.status = statusClientGone
		}
		x.emit() // once: the relay's end, if it started, writes it
	}()
	client, early, slot := takeOver(hj)
	t, err := p.tunnels.Open(client)
	if err != nil {
		x.reason = reasonShutdown
		p.retryLater(ctx, "agimo is shutting down")
		x.stamp(&ctx.Response.Header)
		x.status, x.bytesOut = ctx.Response.StatusCode(), int64(len(ctx.Response.Body()))
		writeAnswer(client, &ctx.Response, r.UpstreamTimeout)
		client.Close()
		slot.Release()
		r.EndRequest()
		return
	}
	// The tunnel closes the client's socket; its slot is free after.
	end := func() {
		t.End()
		slot.Release()
	}
	up, err := p.dialUpstream(ctx, t, r, st, deadline, x)
	if err != nil {
		x.tr.UpstreamDone(0, err)
	}
	if err == nil {
		err = t.SetUpstream(up)
	}
	var late []byte
	if err == nil {
		late, err = p.handshake(client, up, r, head, x)
	}
	if err != nil {
		// A tunnel closed meanwhile (shutdown) has no client left to tell.
		if !errors.Is(err, errAnswered) && t.Context().Err() == nil {
			p.handshakeFailed(ctx, client, r, err, x)
		} else if x.reason == "" && x.status == 0 {
			x.reason = reasonShutdown
		}
		end()
		r.EndRequest()
		return
	}
	// Owned by the tunnel: the registry's Wait waits for its End. The
	// line is written at the tunnel's end, not by this function's defer.
	// With neither log nor span there is none: no copy to keep.
	var tx *exchange
	if x.log != nil || x.tr != nil {
		tx = x.clone()
		tx.status = fasthttp.StatusSwitchingProtocols
	}
	x.log, x.tr, x.status = nil, nil, fasthttp.StatusSwitchingProtocols
	m := stats.NewTunnel(p.metrics, r.Host)
	m.Open.Inc()
	start := time.Now()
	var in, out atomic.Int64
	// tunnel_idle_timeout (0: never) closes a tunnel that moved no
	// byte for that long, pings included, keepalives not. The relay's
	// goroutines are the tunnel's own (tunnel.Start): this one returns.
	t.Start(early, late, tunnel.Options{
		Up:          func(n int64) { m.Up.AddInt64(n); in.Add(n) },
		Down:        func(n int64) { m.Down.AddInt64(n); out.Add(n) },
		IdleTimeout: r.Svc.TunnelIdleTimeout.Duration},
		func(err error) {
			p.log.Debug().Str("host", r.Host).Dur("duration", time.Since(start)).AnErr("reason", err).Msg("tunnel ended")
			if tx != nil {
				tx.bytesIn, tx.bytesOut = in.Load(), out.Load()
				tx.emit()
			}
			m.Open.Dec()
			r.EndRequest()
			end() // last, so that Wait covers the relay to its end
		})
}

var (
	errNotWebSocket = errors.New("upstream switched to another protocol")
	// errAnswered: the handshake has already answered the client, or
	// found it gone.
	errAnswered = errors.New("upgrade answered")
)

// handshake sends the request head upstream and reads the answer. On a
// 101 to WebSocket it relays the 101 to the client and returns the bytes
// the upstream sent right behind it (its first frame may share the 101's
// segment), which must reach the client before anything spliced.
func (p *Proxy) handshake(client, up net.Conn, r *route.Route, head []byte, x *exchange) ([]byte, error) {
	// Bound each read and write like a forwarded request's
	// (upstream_timeout, as an idle timeout).
	uc := upstream.WithIdleTimeout(up, r.UpstreamTimeout)
	if _, err := uc.Write(head); err != nil {
		return nil, fmt.Errorf("write request head: %w", err)
	}
	if err := awaitAnswer(up, r.UpstreamTimeout); err != nil {
		x.tr.UpstreamDone(0, err)
		return nil, fmt.Errorf("read response head: %w", err)
	}
	br := acquireHeadReader(upstream.NewTrailerFieldConn(uc))
	defer releaseHeadReader(br)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	resp.StreamBody = true
	// Without this, the head read would report fasthttp's default
	// Content-Type for an answer that has none, and appendStatusAndHeaders
	// would relay it: nothing may be added to the upstream's answer.
	resp.Header.SetNoDefaultContentType(true)
	// Read skips interim 1xx answers other than 101.
	if err := resp.Read(br); err != nil {
		x.tr.UpstreamDone(0, err)
		return nil, fmt.Errorf("read response head: %w", err)
	}
	x.tr.UpstreamDone(resp.StatusCode(), nil)
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Not switched: relay the answer as a plain response and close
		// both connections. Tunnelling on the client's word alone would
		// let it smuggle requests past the proxy (issue 3); only the 101
		// switches protocols (RFC 9110 §7.8).
		x.stamp(&resp.Header)
		x.status = resp.StatusCode()
		err := p.relayRefusal(client, r, resp)
		up.Close() // done with: it need not wait for the client's linger
		if err == nil {
			tunnel.Linger(client)
		}
		return nil, errAnswered
	}
	proto := bytes.Join(resp.Header.PeekAll(fasthttp.HeaderUpgrade), []byte(", "))
	if !hasToken([][]byte{proto}, "websocket") {
		return nil, fmt.Errorf("101 to %q: %w", proto, errNotWebSocket)
	}
	late := bytes.Clone(peekBuffered(br))
	if err := up.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("clear upstream deadline: %w", err)
	}
	x.stamp(&resp.Header)
	r.EditResponse(&resp.Header)
	if err := writeWithin(client, appendSwitchHead(nil, &resp.Header, proto), r.UpstreamTimeout); err != nil {
		x.reason = reasonClientGone
		p.log.Debug().Str("host", r.Host).Err(err).Msg("tunnel: write 101 to client")
		return nil, errAnswered
	}
	return late, nil
}

// takeOver returns the raw connection under fasthttp's hijacked one and
// the bytes already read past the request head. fasthttp's hijacked conn
// reads its bufio.Reader first (and a connection replayed from the
// parking lot its kept head), while splice needs the *net.TCPConn at the
// bottom. So the layers are drained first: with a read deadline in the
// past, each yields what it buffers and then fails at once instead of
// touching the socket. Then they are peeled off (UnsafeConn).
//
// The caller becomes the connection's owner: it gets the connection's
// max_connections slot, to release once it has closed the socket
// (connlimit.go), and any hand-off undo waiting on the connection is
// dropped, as the Hijack callback that calls takeOver is running.
func takeOver(c net.Conn) (net.Conn, []byte, *connSlot) {
	var slot *connSlot
	for l := c; ; {
		if h, ok := l.(interface{ handOver() *connSlot }); ok && slot == nil {
			slot = h.handOver()
		}
		u, ok := l.(interface{ UnsafeConn() net.Conn })
		if !ok {
			break
		}
		l = u.UnsafeConn()
	}
	u, ok := c.(interface{ UnsafeConn() net.Conn })
	if !ok || c.SetReadDeadline(time.Unix(1, 0)) != nil {
		return c, nil, slot
	}
	var early []byte
	// Pooled: a local array would escape (Read is an interface call) and
	// be 4 KiB of garbage per tunnel, most often to read nothing.
	bp := drainBufs.Get().(*[4096]byte)
	defer drainBufs.Put(bp)
	for {
		n, err := c.Read(bp[:])
		early = append(early, bp[:n]...)
		if err != nil {
			// A timeout means every buffer is empty. EOF or a reset a
			// reader had stored will be read again from the socket.
			break
		}
	}
	if c.SetReadDeadline(time.Time{}) != nil {
		return c, early, slot
	}
	for ok {
		c = u.UnsafeConn()
		u, ok = c.(interface{ UnsafeConn() net.Conn })
	}
	return c, early, slot
}

var drainBufs = sync.Pool{New: func() any { return new([4096]byte) }}

// dialUpstream connects to a ready endpoint of r, round robin as forward
// does, retrying a refused connection until deadline (issue 2: an
// endpoint just announced ready may not listen yet).
func (p *Proxy) dialUpstream(ctx *fasthttp.RequestCtx, t *tunnel.Tunnel, r *route.Route, st *watch.State, deadline time.Time, x *exchange) (net.Conn, error) {
	d := net.Dialer{Timeout: upstream.DialTimeout}
	var c net.Conn
	err := p.core.Attempt(r, st, deadline, func() (*watch.State, error) { return p.park(ctx, r, deadline) },
		func(addr string) error {
			x.upstream = addr
			x.tr.Attempt(addr)
			var err error
			if c, err = d.DialContext(t.Context(), "tcp", addr); err != nil && !upstream.IsRefused(err) {
				return fmt.Errorf("dial %s: %w", addr, err)
			}
			return err
		})
	return c, err
}

// handshakeFailed answers the client as forward would (502, 503 or 504)
// unless it has left, and closes the connection.
func (p *Proxy) handshakeFailed(ctx *fasthttp.RequestCtx, client net.Conn, r *route.Route, err error, x *exchange) {
	if errors.Is(err, park.ErrClientGone) {
		x.reason = reasonClientGone
		return
	}
	if errors.Is(err, errNotWebSocket) {
		x.reason = "upstream_" + stats.UpstreamProtocol
		r.M.Errs[stats.UpstreamProtocol].Inc()
		p.log.Debug().Str("host", r.Host).Err(err).Msg("upstream failed")
		p.reply(ctx, fasthttp.StatusBadGateway, "upstream "+r.Host+" failed: "+stats.UpstreamProtocol)
	} else {
		p.upstreamFailed(ctx, r, err)
	}
	x.stamp(&ctx.Response.Header)
	x.status, x.bytesOut = ctx.Response.StatusCode(), int64(len(ctx.Response.Body()))
	writeAnswer(client, &ctx.Response, r.UpstreamTimeout)
}
