package h2

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/reqid"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/tracing"
)

// record is a stream's response writer, with what an operator sees of it
// (issue 14): its X-Request-Id, the X-Agimo-Cold-Start header once it was
// parked, and its access log line, written when the handler returns (the
// stream's end). Handlers take it as their http.ResponseWriter, so the
// answers need no extra argument to say why Agimo gave them.
type record struct {
	http.ResponseWriter
	log      *accesslog.Logger
	tr       *tracing.Request // nil: tracing off
	req      *http.Request
	start    time.Time
	id       string
	route    *route.Route
	upstream string
	reason   string
	status   int
	parked   time.Duration
	out      int64
	in       atomic.Int64 // an h2c upstream's transport reads on its own goroutine
}

// begin gives the stream its ID (the client's if well-formed and trusted,
// else a new one) on the request going upstream and on the response.
func (s *Server) begin(w http.ResponseWriter, req *http.Request) *record {
	x := &record{ResponseWriter: w, log: s.core.AccessLog, req: req, start: time.Now()}
	vals := req.Header.Values(reqid.Header)
	var got []byte
	if len(vals) == 1 {
		got = []byte(vals[0])
	}
	id, _ := reqid.Choose(nil, got, s.core.TrustRequestID())
	x.id = string(id)
	req.Header[reqid.Header] = []string{x.id}
	w.Header()[reqid.Header] = []string{x.id}
	if t := s.core.Tracer; t != nil {
		x.tr = t.Start(x.start, tracing.Inbound{
			Traceparent: req.Header.Get("Traceparent"),
			// Repeated fields are one list (W3C Trace Context §3.3.1.1).
			Tracestate: strings.Join(req.Header.Values("Tracestate"), ","),
			Method:     req.Method, Host: req.Host, Path: string(route.Path([]byte(req.RequestURI))),
			Client: req.RemoteAddr, RequestID: x.id, Proto: "2",
		})
	}
	if x.log != nil && hasBody(req) {
		req.Body = &countedBody{ReadCloser: req.Body, n: &x.in}
	}
	return x
}

func (x *record) WriteHeader(status int) {
	if x.status == 0 && status >= 200 {
		x.status = status
	}
	x.ResponseWriter.WriteHeader(status)
}

func (x *record) Write(b []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	n, err := x.ResponseWriter.Write(b)
	x.out += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the stream's writer
// (flushes, read deadlines).
func (x *record) Unwrap() http.ResponseWriter { return x.ResponseWriter }

// parkedFor adds d to the time the stream was parked and sets the
// cold-start header, unless its service turned it off.
func (x *record) parkedFor(d time.Duration) {
	x.parked += d
	if x.route != nil && x.route.Svc.WantsColdStartHeader() {
		x.Header().Set("X-Agimo-Cold-Start", strconv.FormatFloat(x.parked.Seconds(), 'f', 3, 64))
	}
}

// end ends the stream's span and writes its access log line.
func (x *record) end() {
	if x.log == nil && x.tr == nil {
		return
	}
	status := x.status
	switch {
	case x.reason == reasonClientGone:
		status = 499
	case status == 0:
		status = http.StatusOK // net/http's answer to a handler that wrote nothing
	}
	if x.tr != nil {
		var route string
		if x.route != nil {
			route = x.route.Host
		}
		x.tr.End(status, route, x.reason)
	}
	if x.log == nil {
		return
	}
	e := accesslog.Entry{Start: x.start, ClientString: x.req.RemoteAddr, Method: []byte(x.req.Method),
		Host: []byte(x.req.Host), Path: []byte(x.req.RequestURI), Proto: accesslog.ProtoHTTP2,
		Status: status, BytesIn: x.in.Load(), BytesOut: x.out, Parked: x.parked,
		Upstream: x.upstream, RequestID: []byte(x.id), Reason: x.reason}
	if x.route != nil {
		e.Route = x.route.Name()
	}
	x.log.Log(&e)
}

// traceOf returns the stream's spans (nil: tracing off).
func traceOf(w http.ResponseWriter) *tracing.Request {
	if x, ok := w.(*record); ok {
		return x.tr
	}
	return nil
}

// setReason records why Agimo answered the stream itself.
func setReason(w http.ResponseWriter, reason string) {
	if x, ok := w.(*record); ok {
		x.reason = reason
	}
}

// Reasons in the access log for Agimo's own answers, as over HTTP/1.1.
const (
	reasonBadRequest      = "bad_request"
	reasonNoRoute         = "no_route"
	reasonParkTimeout     = "park_timeout"
	reasonMaxParked       = "max_parked"
	reasonShutdown        = "shutdown"
	reasonClientGone      = "client_gone"
	reasonBodyTooLarge    = "body_too_large"
	reasonUpstreamRefused = "upstream_refused"
	reasonPoolFull        = "upstream_pool_full"
	reasonWaitingPage     = "waiting_page"
	reasonProbe           = "probe"
	reasonRedirect        = "https_redirect"
	reasonRouteRedirect   = "redirect" // Gateway API RequestRedirect
	reasonFixed           = "fixed"    // a route's fixed status (conf.Extras.Fixed)
)

// countedBody counts a request body's bytes for the access log.
type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
