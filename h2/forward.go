package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/fields"
	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/reqid"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/upstream"
	"github.com/agimo/agimo/watch"
)

// forward sends the stream's request to a ready endpoint of r, over h2c
// or HTTP/1.1 as the service's protocol says, and relays the response.
func (s *Server) forward(w http.ResponseWriter, req *http.Request, r *route.Route, st *watch.State, deadline time.Time, g bool) {
	tr := traceOf(w)
	repark := func() (*watch.State, error) {
		start := time.Now()
		st, err := s.core.Waiter.Wait(r, deadline, req.Context().Done(), tr)
		end := time.Now()
		if x, ok := w.(*record); ok {
			x.parkedFor(end.Sub(start))
		}
		tr.Park(start, end, err)
		return st, err
	}
	if !g {
		// As over HTTP/1.1 (proxy.dropUnderscoreNames): behind the proxy
		// "X_Forwarded_For" may be read as X-Forwarded-For (CGI maps both
		// to HTTP_X_FORWARDED_FOR). gRPC metadata keys may hold '_', and
		// go to gRPC servers: kept.
		for k := range req.Header {
			if strings.IndexByte(k, '_') >= 0 {
				delete(req.Header, k)
			}
		}
	}
	if r.H2C(st) {
		s.forwardH2C(w, req, r, st, deadline, g, repark)
		return
	}
	if g {
		// gRPC needs HTTP/2 end to end (trailers on every response).
		s.refuse(w, g, http.StatusBadGateway, 0, "service "+r.Host+" does not speak h2c; set protocol = \"h2c\" or appProtocol kubernetes.io/h2c")
		return
	}
	s.forwardH1(w, req, r, st, deadline, repark)
}

// forwardH2C relays through httputil.ReverseProxy, which does what an
// HTTP/2-to-HTTP/2 hop needs and is well kept: hop-by-hop fields, "TE:
// trailers" kept for gRPC, trailers both ways, a flush per write of a
// streamed response, and the upstream stream reset when the client's is.
func (s *Server) forwardH2C(w http.ResponseWriter, req *http.Request, r *route.Route, st *watch.State,
	deadline time.Time, g bool, repark func() (*watch.State, error)) {
	tr := traceOf(w)
	traceparent := tr.Upstream() // "": the client's goes on untouched
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.Host = pr.In.Host
			if traceparent != "" {
				pr.Out.Header.Set("Traceparent", traceparent)
			}
			// The request's trailers arrive at the end of its body, into
			// In.Trailer: Out must share that map, not the copy Clone made
			// before they came, for the transport to send them.
			pr.Out.Trailer = pr.In.Trailer
			setForwarded(pr.Out.Header, pr.In, s.core.Opts.TrustForwarded)
			// Gateway API filters last, as over HTTP/1.1 (proxy.prepareRequest).
			host, target := rewrite(pr.In, r)
			if host != "" {
				pr.Out.Host = host
			}
			if target != nil {
				setURLTarget(pr.Out.URL, target)
			}
			r.EditRequest(pr.Out.Header)
			if pr.Out.Body != nil && pr.Out.Body != http.NoBody {
				// x/net/http2 recycles the stream's writer, which the
				// body's reads use (client_body_timeout), once this handler
				// returns: the transport must be done reading by then.
				var interrupt func()
				if cb, ok := req.Body.(*clientBody); ok {
					interrupt = cb.interrupt
				}
				pr.Out.Body = core.NewHeldBody(pr.Out.Body, interrupt)
			}
		},
		Transport: roundTripper(func(out *http.Request) (*http.Response, error) {
			resp, err := s.core.RoundTripH2C(out, r, st, deadline, repark)
			if err != nil {
				tr.UpstreamDone(0, err)
			} else {
				if resp.Request != nil {
					tr.Attempt(resp.Request.URL.Host)
				}
				tr.UpstreamDone(resp.StatusCode, nil)
				r.ReadyCold()
				r.FirstByte()
				// The transport's request is addressed to the endpoint.
				if x, ok := w.(*record); ok && resp.Request != nil {
					x.upstream = resp.Request.URL.Host
				}
			}
			return resp, err
		}),
		FlushInterval: -1,
		BufferPool:    proxyBuffers{},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			s.upstreamFailed(w, req, r, g, err)
		},
		ErrorLog: s.base.ErrorLog, // per stream: at debug
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Header.Del(reqid.Header) // Agimo's is already on w
		r.EditResponse(resp.Header)
		if resp.ContentLength == 0 {
			// No body (a gRPC error is a Trailers-Only response: one
			// HEADERS frame with END_STREAM). FlushInterval -1 makes
			// ReverseProxy flush the head from a timer at once, racing the
			// handler's return: the head would go without END_STREAM and
			// an empty DATA frame end the stream, and a gRPC client takes
			// that for a stream without trailers (INTERNAL). Nothing to
			// flush here: the head goes with END_STREAM when ServeHTTP ends.
			rp.FlushInterval = 0
		}
		return nil
	}
	// Invent nothing the upstream did not send (see forwardH1): the
	// upstream's values are added to these nil ones.
	w.Header()["Content-Type"] = nil
	w.Header()["Date"] = nil
	rp.ServeHTTP(w, req)
}

// proxyBuffers lends ReverseProxy the relay buffers of bufPool.
type proxyBuffers struct{}

func (proxyBuffers) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (proxyBuffers) Put(b []byte) { bufPool.Put(&b) }

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// forwardH1 relays an HTTP/2 stream to an HTTP/1.1 upstream through the
// core's pools: the same connections, idle timeouts and retries as the
// HTTP/1.1 front end's requests.
func (s *Server) forwardH1(w http.ResponseWriter, req *http.Request, r *route.Route, st *watch.State,
	deadline time.Time, repark func() (*watch.State, error)) {
	freq := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(freq)
	h := &freq.Header
	h.SetNoDefaultContentType(true)
	h.SetMethod(req.Method)
	h.SetRequestURI(req.RequestURI)
	h.SetHost(req.Host)
	freq.UseHostHeader = true
	for k, vv := range req.Header {
		if fields.IsHopByHop([]byte(k), nil) || fields.IsFraming([]byte(k)) || k == "Host" {
			continue
		}
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	hdr := http.Header{}
	setForwarded(hdr, req, s.core.Opts.TrustForwarded)
	tr := traceOf(w)
	if tp := tr.Upstream(); tp != "" { // "": the client's goes on untouched
		hdr.Set("Traceparent", tp)
	}
	for k, vv := range hdr {
		h.Del(k)
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	// Gateway API filters last, as over HTTP/1.1 (proxy.prepareRequest).
	host, target := rewrite(req, r)
	if host != "" {
		h.SetHost(host)
	}
	if target != nil {
		h.SetRequestURIBytes(target)
	}
	r.EditRequest(h)
	if hasBody(req) {
		n := int(req.ContentLength)
		var body io.Reader = req.Body
		if n < 0 {
			n = -1 // chunked towards the upstream, trailers after it
			body = newRequestTrailers(body, h, req.Trailer)
		}
		freq.SetBodyStream(body, n)
	}
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	resp.Header.SetNoDefaultContentType(true)
	err := s.core.Attempt(r, st, deadline, repark, func(addr string) error {
		if x, ok := w.(*record); ok {
			x.upstream = addr
		}
		tr.Attempt(addr)
		return s.core.Pools.Get(addr, r.UpstreamTimeout, r.Timeout).Do(freq, resp)
	})
	if err == nil && resp.StatusCode() == fasthttp.StatusSwitchingProtocols {
		err = errors.New("101 Switching Protocols to an HTTP/2 request")
		resp.SetConnectionClose()
	}
	tr.UpstreamDone(resp.StatusCode(), err)
	if err != nil {
		s.upstreamFailed(w, req, r, false, err)
		return
	}
	r.ReadyCold()
	r.FirstByte()
	listed := bytes.Join(resp.Header.PeekAll(fasthttp.HeaderConnection), []byte(","))
	out := w.Header()
	for k, v := range resp.Header.All() {
		if fields.IsFraming(k) || fields.IsHopByHop(k, listed) || bytes.EqualFold(k, []byte("Trailer")) ||
			bytes.EqualFold(k, []byte(reqid.Header)) { // Agimo's is already on w
			continue
		}
		out.Add(string(k), string(v))
	}
	r.EditResponse(out)
	// Invent nothing the upstream did not send: net/http would sniff a
	// Content-Type and add a Date (a nil value suppresses each).
	if _, ok := out["Content-Type"]; !ok {
		out["Content-Type"] = nil
	}
	if _, ok := out["Date"]; !ok {
		out["Date"] = nil
	}
	status := resp.StatusCode()
	if n := resp.Header.ContentLength(); n >= 0 && status != http.StatusNoContent && status != http.StatusNotModified {
		out.Set("Content-Length", strconv.Itoa(n))
	}
	w.WriteHeader(status)
	if req.Method == http.MethodHead || status < 200 || status == http.StatusNoContent || status == http.StatusNotModified {
		return
	}
	body := resp.BodyStream()
	if body == nil {
		_, _ = w.Write(resp.Body())
		return
	}
	streamed := resp.Header.ContentLength() < 0
	rc := http.NewResponseController(w)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				r.M.ClientErrs[stats.ClientSendTimeout].Inc()
				return
			}
			if streamed {
				_ = rc.Flush() // a slow stream (SSE) reaches the client per event
			}
		}
		if rerr == io.EOF && resp.Header.ContentLength() == -1 {
			rerr = upstream.ChunkedEnd(rerr, upstream.ConnOf(resp))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The upstream cut the body short: reset the stream, so the
			// client sees an incomplete response, not a clean end.
			r.M.Errs[upstream.Kind(rerr)].Inc()
			s.log.Debug().Str("host", r.Host).Err(rerr).Msg("upstream body failed")
			panic(http.ErrAbortHandler)
		}
	}
	copyTrailers(out, resp.Header.TrailerHeader(), listed)
}

// bufPool holds the buffers responses are relayed through: one per
// request in flight, not one allocated per request.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyTrailers sends the trailer section an HTTP/1.1 upstream sent, minus
// the fields that must not go on, as the stream's trailers.
func copyTrailers(out http.Header, section, listed []byte) {
	for len(section) > 0 {
		line, rest, _ := bytes.Cut(section, []byte{'\n'})
		section = rest
		k, v, ok := bytes.Cut(bytes.TrimSuffix(line, []byte{'\r'}), []byte{':'})
		if ok && upstream.TrailerName(k, listed) {
			out.Add(http.TrailerPrefix+string(k), string(bytes.TrimLeft(v, " \t")))
		}
	}
}

// setForwarded sets X-Forwarded-For, -Proto and -Host on h for in, as the
// HTTP/1.1 front end does: replaced, or appended to when the client is a
// trusted proxy (trust_forwarded_headers).
func setForwarded(h http.Header, in *http.Request, trust bool) {
	ip, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		ip = in.RemoteAddr
	}
	proto := "http"
	if overTLS(in) {
		proto = "https"
	}
	host := in.Host
	if trust {
		if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = joinList(prior) + ", " + ip
		}
		if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
			proto = v
		}
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
	}
	h.Set("X-Forwarded-For", ip)
	h.Set("X-Forwarded-Proto", proto)
	h.Set("X-Forwarded-Host", host)
}

func joinList(vs []string) string {
	var b bytes.Buffer
	for i, v := range vs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	return b.String()
}

// upstreamFailed answers a stream whose upstream exchange failed, as the
// HTTP/1.1 front end does (proxy.upstreamFailed): 504 for an upstream that
// stayed silent, 503 if the service never accepted the connection before
// the deadline, 502 otherwise; the client's own failures as theirs.
func (s *Server) upstreamFailed(w http.ResponseWriter, req *http.Request, r *route.Route, g bool, err error) {
	if cb, ok := req.Body.(*clientBody); ok {
		if status, kind := cb.failed(); status != 0 {
			if kind != "" {
				r.M.ClientErrs[kind].Inc()
				setReason(w, "client_"+kind)
			}
			s.log.Debug().Str("host", r.Host).Err(err).Msg("request body failed")
			s.refuse(w, g, status, 0, "request body failed")
			return
		}
	}
	kind := upstream.Kind(err)
	retry := r.RetryAfter(s.core.Opts.RetryAfter)
	switch {
	case errors.Is(err, park.ErrClientGone), req.Context().Err() != nil && !errors.Is(err, park.ErrTimeout):
		setReason(w, reasonClientGone)
		s.log.Debug().Str("host", r.Host).Msg("client left")
		return
	case kind == stats.UpstreamPoolFull:
		setReason(w, reasonPoolFull)
		r.M.Errs[kind].Inc()
		s.refuse(w, g, http.StatusServiceUnavailable, s.core.Opts.RetryAfter, "no free connection to service "+r.Host+" within "+r.Timeout.String())
		return
	case errors.Is(err, park.ErrFull):
		setReason(w, reasonMaxParked)
		r.M.Rejected.Inc()
		s.refuse(w, g, http.StatusServiceUnavailable, retry, "too many requests waiting for service "+r.Host)
		return
	case errors.Is(err, park.ErrStopping):
		setReason(w, reasonShutdown)
		s.refuse(w, g, http.StatusServiceUnavailable, s.core.Opts.RetryAfter, "agimo is shutting down")
		return
	case errors.Is(err, park.ErrTimeout) || kind == stats.UpstreamRefused:
		setReason(w, reasonParkTimeout)
		if kind == stats.UpstreamRefused {
			setReason(w, reasonUpstreamRefused)
		}
		r.M.Timeouts.Inc()
		s.refuse(w, g, http.StatusServiceUnavailable, retry, "service "+r.Host+" did not accept connections within "+r.Timeout.String())
		return
	}
	r.M.Errs[kind].Inc()
	s.log.Debug().Str("host", r.Host).Str("kind", kind).Err(err).Msg("upstream failed")
	setReason(w, "upstream_"+kind)
	if kind == stats.UpstreamTimeout {
		s.refuse(w, g, http.StatusGatewayTimeout, 0, "upstream "+r.Host+" timed out")
		return
	}
	s.refuse(w, g, http.StatusBadGateway, 0, "upstream "+r.Host+" failed: "+kind)
}
