package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/fields"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/watch"
)

// forwardH2C relays an HTTP/1.1 request to an upstream that speaks h2c
// (protocol = "h2c", or appProtocol kubernetes.io/h2c), through the
// core's h2c transport: the request, prepared as for any upstream, is
// carried as an HTTP/2 stream, and the response comes back as HTTP/1.1,
// chunked with its trailers when its length is unknown. It returns what
// forward returns.
func (p *Proxy) forwardH2C(ctx *fasthttp.RequestCtx, r *route.Route, st *watch.State, deadline time.Time,
	counted, clientClose bool, cb *clientBody) bool {
	req := &ctx.Request
	path, query := splitTarget(req.Header.RequestURI())
	hreq := &http.Request{
		Method: string(req.Header.Method()),
		// Opaque keeps the path as the client sent it, byte for byte.
		URL:    &url.URL{Scheme: "http", Host: "upstream", Opaque: path, RawQuery: query},
		Host:   string(req.Header.Host()),
		Header: make(http.Header),
		Body:   http.NoBody,
	}
	for k, v := range req.Header.All() {
		// Trailer is announced by the transport, from hreq.Trailer.
		if fields.IsFraming(k) || string(k) == fasthttp.HeaderHost || string(k) == fasthttp.HeaderTrailer {
			continue
		}
		hreq.Header.Add(string(k), string(v))
	}
	var held *core.HeldBody
	if n, hasBody := requestBody(ctx); hasBody {
		var body io.Reader = req.BodyStream()
		if keys := req.Header.PeekTrailerKeys(); n < 0 && len(keys) > 0 {
			// A chunked body's trailer section (prepareRequestTrailers
			// kept what may go on) becomes the stream's trailers.
			hreq.Trailer = make(http.Header, len(keys))
			for _, k := range keys {
				hreq.Trailer[http.CanonicalHeaderKey(string(k))] = nil
			}
			body = &h2cRequestTrailers{r: body, h: &req.Header, out: hreq.Trailer}
		}
		// fasthttp reuses the body stream once the handler (or the
		// response body's Close) returns: the transport's goroutine must
		// be done reading it by then. A past read deadline ends a read
		// waiting for the client.
		conn := ctx.Conn()
		held = core.NewHeldBody(body, func() { _ = conn.SetReadDeadline(time.Now()) })
		hreq.Body = held
		hreq.ContentLength = int64(n) // -1 for chunked: unknown
	}
	resp, err := p.core.RoundTripH2C(hreq.WithContext(context.Background()), r, st, deadline,
		func() (*watch.State, error) { return p.park(ctx, r, deadline) })
	x := exchangeOf(ctx)
	if err != nil {
		x.tr.UpstreamDone(0, err)
		// Read once the transport is done with the body (released).
		if cb != nil && cb.err != nil && !held.Interrupted() {
			err = cb.err
		}
		if held.Interrupted() {
			ctx.SetConnectionClose() // the rest of the body is unread
		}
		p.upstreamFailed(ctx, r, err)
		return false
	}
	if x.tr != nil && resp.Request != nil { // the transport's request: addressed to the endpoint
		x.tr.Attempt(resp.Request.URL.Host)
	}
	x.tr.UpstreamDone(resp.StatusCode, nil)
	r.ReadyCold()
	r.FirstByte()
	h := &ctx.Response.Header
	h.SetStatusCode(resp.StatusCode)
	h.SetNoDefaultContentType(true)
	for k, vv := range resp.Header {
		if fields.IsFraming([]byte(k)) || fields.IsHopByHop([]byte(k), nil) || k == "Trailer" {
			continue
		}
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	for k := range resp.Trailer {
		_ = h.AddTrailer(k) // announced; a name fasthttp refuses is dropped
	}
	r.EditResponse(h)
	if clientClose {
		ctx.SetConnectionClose()
	}
	if req.Header.IsHead() || !bodyAllowed(resp.StatusCode) {
		if resp.ContentLength >= 0 && resp.StatusCode != fasthttp.StatusNoContent {
			h.SetContentLength(int(resp.ContentLength))
		}
		ctx.Response.SkipBody = true
		resp.Body.Close()
		return false
	}
	n := int(resp.ContentLength)
	if n < 0 {
		n = -1
	}
	ctx.Response.ImmediateHeaderFlush = n < 0
	if resp.Request != nil { // the transport's request: addressed to the endpoint
		x.upstream = resp.Request.URL.Host
	}
	b := &h2cBody{resp: resp, trailer: h, x: x}
	x.taken, x.status = true, resp.StatusCode
	if counted {
		b.counted = r
	}
	ctx.Response.SetBodyStream(b, n)
	return counted
}

// splitTarget splits a request target into its path and query, for
// origin-form and absolute-form alike (route.Path).
func splitTarget(uri []byte) (string, string) {
	path := route.Path(uri)
	var query string
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		query = string(uri[i+1:])
	}
	if len(path) == 0 {
		return "/", query
	}
	return string(path), query
}

// h2cBody streams an h2c response to the client; at its end its trailers
// become the chunked response's trailer section. Close ends the stream
// upstream and the request's activity.
type h2cBody struct {
	resp    *http.Response
	trailer *fasthttp.ResponseHeader
	counted *route.Route // nil for requests not counted (probes)
	x       *exchange    // the request's record, its line written by Close
}

func (b *h2cBody) Read(p []byte) (int, error) {
	n, err := b.resp.Body.Read(p)
	b.x.bytesOut += int64(n)
	if err == io.EOF && b.trailer != nil {
		for k, vv := range b.resp.Trailer {
			for _, v := range vv {
				if b.trailer.AddTrailer(k) == nil {
					b.trailer.Add(k, v)
				}
			}
		}
		b.trailer = nil
	}
	return n, err
}

func (b *h2cBody) Close() error {
	err := b.resp.Body.Close()
	if b.counted != nil {
		b.counted.EndRequest()
	}
	b.x.emit()
	return err
}

// h2cRequestTrailers passes a chunked request body on and, at its end,
// copies the trailer section fasthttp read into h to out, the stream's
// trailers, which the transport sends once the body has ended.
type h2cRequestTrailers struct {
	r   io.Reader
	h   *fasthttp.RequestHeader
	out http.Header
}

func (b *h2cRequestTrailers) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.out != nil {
		for k := range b.out {
			for _, v := range b.h.PeekAll(k) {
				b.out[k] = append(b.out[k], string(v))
			}
		}
		b.out = nil
	}
	return n, err
}
