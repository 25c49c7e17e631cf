package proxy

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/reqid"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/tracing"
)

// What an operator sees of each request (issue 14): its X-Request-Id, the
// X-Agimo-Cold-Start header of a request that was parked, and its access
// log line, written once the response has been (upstreamBody.Close,
// h2cBody.Close, the tunnel's end, the lot's refusal, or the handler's end
// for answers fasthttp writes from memory, which it writes right after).

var (
	hRequestID   = []byte(reqid.Header)
	hColdStart   = []byte("X-Agimo-Cold-Start")
	hTraceparent = []byte("traceparent")
)

// exchange is one request's record, from its head to its log line. A
// connection serves one request at a time, so each clientConn holds one
// and reuses its buffers; a request leaving fasthttp (the lot, a tunnel)
// takes a copy along.
type exchange struct {
	log    *accesslog.Logger // nil: no line
	tr     *tracing.Request  // nil: tracing off
	start  time.Time
	client net.Addr
	id     []byte
	// method, host and target are copies: the request's own bytes change
	// on their way upstream.
	method, host, target []byte
	proto                string
	route                *route.Route
	upstream             string
	reason               string
	status               int
	parked               time.Duration
	bytesIn, bytesOut    int64
	// idAsSent: the client's one X-Request-Id line is the ID, untouched.
	idAsSent bool
	// taken: the line is written by whoever took the response over (a
	// streamed body's Close, the tunnel, the lot), not the handler's end.
	taken bool
}

// exchangeOf returns ctx's record: its connection's, or a fresh one for
// a connection the proxy did not wrap (tests serving a bare conn).
func exchangeOf(ctx *fasthttp.RequestCtx) *exchange {
	if c, ok := ctx.Conn().(interface{ record() *exchange }); ok {
		return c.record()
	}
	if x, ok := ctx.UserValue(exchangeKey{}).(*exchange); ok {
		return x
	}
	x := &exchange{}
	ctx.SetUserValue(exchangeKey{}, x)
	return x
}

type exchangeKey struct{}

func (c *clientConn) record() *exchange { return &c.x }

// begin starts the record of a request that has just arrived and gives
// it its ID: the client's if well-formed and trusted, else a new one,
// which replaces the client's on the way upstream; with tr (nil: off),
// it starts the request's span.
func (x *exchange) begin(ctx *fasthttp.RequestCtx, log *accesslog.Logger, trust bool, tr *tracing.Tracer) {
	h := &ctx.Request.Header
	*x = exchange{log: log, start: time.Now(), client: ctx.RemoteAddr(), id: x.id[:0],
		method: x.method[:0], host: x.host[:0], target: x.target[:0], proto: accesslog.ProtoHTTP1}
	var kept bool
	x.id, kept = reqid.Choose(x.id, h.PeekBytes(hRequestID), trust)
	if x.idAsSent = kept && len(h.PeekAll(reqid.Header)) == 1; !x.idAsSent {
		h.DelBytes(hRequestID)
		h.SetBytesKV(hRequestID, x.id) // last, as fasthttp adds a field
	}
	if log != nil {
		x.method = append(x.method, h.Method()...)
		x.host = append(x.host, h.Host()...)
		x.target = append(x.target, h.RequestURI()...)
	}
	if tr != nil {
		x.tr = tr.Start(x.start, tracing.Inbound{
			Traceparent: string(h.PeekBytes(hTraceparent)),
			// Repeated lines are one list (RFC 9110 §5.3; W3C Trace
			// Context §3.3.1.1).
			Tracestate: string(bytes.Join(h.PeekAll("tracestate"), []byte{','})),
			Method:     string(h.Method()), Host: string(h.Host()),
			Path: string(route.Path(h.RequestURI())), Client: x.client.String(),
			RequestID: string(x.id), Proto: strings.TrimPrefix(string(h.Protocol()), "HTTP/"),
		})
	}
}

// traceUpstream gives the request going upstream the traceparent of its
// upstream span in place of the client's (W3C Trace Context §3.2); off,
// the client's goes on untouched.
func (x *exchange) traceUpstream(h *fasthttp.RequestHeader) {
	if x.tr == nil {
		return
	}
	h.DelBytes(hTraceparent)
	h.SetBytesKV(hTraceparent, []byte(x.tr.Upstream()))
}

// clone copies x for a request leaving its connection's record behind.
func (x *exchange) clone() *exchange {
	c := *x
	c.id = bytes.Clone(x.id)
	c.method, c.host, c.target = bytes.Clone(x.method), bytes.Clone(x.host), bytes.Clone(x.target)
	return &c
}

// parkedFor adds d to the time the request was parked.
func (x *exchange) parkedFor(d time.Duration) { x.parked += d }

// stamp puts the request ID and, for a request that was parked, the
// cold-start header on a response head, replacing an upstream's own.
func (x *exchange) stamp(h *fasthttp.ResponseHeader) {
	if len(h.PeekBytes(hRequestID)) > 0 {
		h.DelBytes(hRequestID)
	}
	h.SetBytesKV(hRequestID, x.id)
	if x.parked > 0 && (x.route == nil || x.route.Svc.WantsColdStartHeader()) {
		var b [24]byte
		h.SetBytesKV(hColdStart, strconv.AppendFloat(b[:0], x.parked.Seconds(), 'f', 3, 64))
	}
}

// coldStartLine is the cold-start header as a raw line, "" if none.
func (x *exchange) coldStartLine() string {
	if x.parked <= 0 || (x.route != nil && !x.route.Svc.WantsColdStartHeader()) {
		return ""
	}
	return "X-Agimo-Cold-Start: " + strconv.FormatFloat(x.parked.Seconds(), 'f', 3, 64) + "\r\n"
}

// emit ends the request's span and writes the access log line, once.
func (x *exchange) emit() {
	if x.tr != nil {
		var route string
		if x.route != nil {
			route = x.route.Host
		}
		x.tr.End(x.status, route, x.reason)
		x.tr = nil
	}
	if x.log == nil {
		return
	}
	e := accesslog.Entry{Start: x.start, Client: x.client, Method: x.method, Host: x.host, Path: x.target,
		Proto: x.proto, Status: x.status, BytesIn: x.bytesIn, BytesOut: x.bytesOut, Parked: x.parked,
		Upstream: x.upstream, RequestID: x.id, Reason: x.reason}
	if x.route != nil {
		e.Route = x.route.Name()
	}
	x.log.Log(&e)
	x.log = nil
}

// finish ends a request the handler answered from memory (or whose body
// it handed on): the head gets its fields, and unless taken the line is
// written now, fasthttp writing the response right after.
func (x *exchange) finish(ctx *fasthttp.RequestCtx) {
	if ctx.Hijacked() {
		return
	}
	x.stamp(&ctx.Response.Header)
	if x.taken {
		return
	}
	x.status = ctx.Response.StatusCode()
	if x.reason == reasonClientGone {
		x.status = statusClientGone
	}
	if !ctx.Response.SkipBody {
		x.bytesOut = int64(len(ctx.Response.Body()))
	}
	x.emit()
}

// setReason records why Agimo answered ctx's request itself.
func setReason(ctx *fasthttp.RequestCtx, reason string) { exchangeOf(ctx).reason = reason }

// Reasons in the access log for Agimo's own answers.
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
	reasonNotServed       = "not_served"
	// statusClientGone is nginx's 499: the client left before an answer.
	statusClientGone = 499
)

// headWithID returns the parked request's head for the lot to replay: the
// client's, with the ID x gave it in place of any X-Request-Id of the
// client's, last as on a request forwarded at once, so that the replayed
// request keeps its ID and goes upstream as it would have when ready.
func headWithID(h *fasthttp.RequestHeader, x *exchange) []byte {
	raw := h.RawHeaders()
	head := make([]byte, 0, len(h.Method())+len(h.RequestURI())+len(h.Protocol())+len(raw)+len(x.id)+24)
	head = append(append(append(head, h.Method()...), ' '), h.RequestURI()...)
	head = append(append(append(head, ' '), h.Protocol()...), "\r\n"...)
	if x.idAsSent {
		return append(head, raw...)
	}
	for len(raw) > 0 {
		line, rest, found := bytes.Cut(raw, []byte{'\n'})
		if found {
			line = raw[:len(line)+1]
		}
		raw = rest
		if len(bytes.TrimRight(line, "\r\n")) == 0 { // the head's end
			head = append(append(append(append(head, reqid.Header...), ": "...), x.id...), "\r\n"...)
		} else if k, _, ok := bytes.Cut(line, []byte{':'}); ok && bytes.EqualFold(bytes.TrimRight(k, " \t"), hRequestID) {
			continue
		}
		head = append(head, line...)
	}
	return head
}
