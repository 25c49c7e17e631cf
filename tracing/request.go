package tracing

import (
	"context"
	"net"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Inbound is what a front end knows of a request as it arrives.
type Inbound struct {
	// Traceparent and Tracestate are the client's fields ("" if none).
	Traceparent, Tracestate string
	Method, Host            string
	// Path is the request target's path, without the query.
	Path string
	// Client is the client's address, host:port.
	Client string
	// RequestID is the X-Request-Id Agimo gave the request (reqid).
	RequestID string
	// Proto is the HTTP version: "1.1" or "2".
	Proto string
}

// Attribute keys Agimo adds to the semantic conventions' own.
const (
	keyRequestID = attribute.Key("http.request_id")
	keyRoute     = attribute.Key("agimo.route")
	keyReason    = attribute.Key("agimo.reason")
	keyAttempts  = attribute.Key("agimo.upstream.attempts")
	keyScaled    = attribute.Key("agimo.wake.scaled")
)

// Request is one request's spans. A nil *Request is tracing off: every
// method returns at once. Its methods are called in the request's order,
// one at a time (the request moves between goroutines only with a
// happens-before: the lot's release, a tunnel's start), except Wake,
// which the wake-up's goroutine calls at any time.
type Request struct {
	t        *Tracer
	ctx      context.Context // holds the server span, parent of the others
	span     trace.Span
	up       trace.Span // nil until Upstream
	attempts int
}

// Start starts the server span of a request that arrived at start,
// a child of the client's traceparent if it sent a valid one (W3C Trace
// Context §3.2), else the root of a new trace.
func (t *Tracer) Start(start time.Time, in Inbound) *Request {
	if t == nil {
		return nil
	}
	parent := t.prop.Extract(context.Background(), &carrier{in.Traceparent, in.Tracestate})
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(in.Method),
		semconv.ServerAddress(in.Host),
		semconv.URLPath(in.Path),
		semconv.NetworkProtocolVersion(in.Proto),
		keyRequestID.String(in.RequestID),
	}
	if host, port, err := net.SplitHostPort(in.Client); err == nil {
		attrs = append(attrs, semconv.ClientAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ClientPort(p))
		}
	} else if in.Client != "" {
		attrs = append(attrs, semconv.ClientAddress(in.Client))
	}
	// Named by the method alone: there is no route template (semantic
	// conventions, HTTP server span name).
	ctx, span := t.tracer.Start(parent, in.Method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	return &Request{t: t, ctx: ctx, span: span}
}

// Park records a park from start to end, child of the request's span;
// err is why it ended without readiness (nil: released ready).
func (r *Request) Park(start, end time.Time, err error) {
	if r == nil {
		return
	}
	_, span := r.t.tracer.Start(r.ctx, "park", trace.WithTimestamp(start))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End(trace.WithTimestamp(end))
}

// Wake records the wake-up this request started (scale.WakeHook): the
// scaler's calls from start to end, whether they scaled the workload
// from zero, and their error.
func (r *Request) Wake(start, end time.Time, scaled bool, err error) {
	if r == nil {
		return
	}
	_, span := r.t.tracer.Start(r.ctx, "wake", trace.WithTimestamp(start),
		trace.WithAttributes(keyScaled.Bool(scaled)))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End(trace.WithTimestamp(end))
}

// Upstream starts the upstream call's span (client kind) and returns the
// traceparent the upstream request carries in place of the client's: the
// same trace, with this span as parent (W3C Trace Context §3.2, §4.3).
// The client's tracestate goes on unchanged. It returns "" when off.
func (r *Request) Upstream() string {
	if r == nil {
		return ""
	}
	if r.up != nil { // a request forwarded again (a replay): one span
		r.up.End()
	}
	var ctx context.Context
	ctx, r.up = r.t.tracer.Start(r.ctx, "upstream", trace.WithSpanKind(trace.SpanKindClient))
	r.attempts = 0
	var c carrier
	r.t.prop.Inject(ctx, &c)
	return c.traceparent
}

// Attempt notes a try of the upstream call at addr (host:port); each
// after the first is a retry, after a refused connection (core.Attempt),
// recorded as an event.
func (r *Request) Attempt(addr string) {
	if r == nil || r.up == nil {
		return
	}
	r.attempts++
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	p, _ := strconv.Atoi(port)
	peer := []attribute.KeyValue{semconv.NetworkPeerAddress(host), semconv.NetworkPeerPort(p)}
	if r.attempts > 1 {
		r.up.AddEvent("retry", trace.WithAttributes(append(peer, keyReason.String("connection refused"))...))
	}
	r.up.SetAttributes(append(peer, semconv.ServerAddress(host), semconv.ServerPort(p))...)
}

// UpstreamDone records the upstream call's result: the response's status,
// or err. The span ends with the request (End), once the response body
// has been relayed.
func (r *Request) UpstreamDone(status int, err error) {
	if r == nil || r.up == nil {
		return
	}
	r.up.SetAttributes(keyAttempts.Int(r.attempts))
	switch {
	case err != nil:
		r.up.SetStatus(codes.Error, err.Error())
	case status > 0:
		r.up.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 400 { // a client span's error (semantic conventions)
			r.up.SetStatus(codes.Error, "")
		}
	}
}

// End ends the request's spans: status is its answer's (499: the client
// left), route the service's host ("" if none matched), reason why Agimo
// answered itself ("" if the upstream did).
func (r *Request) End(status int, route, reason string) {
	if r == nil {
		return
	}
	if r.up != nil {
		r.up.End()
	}
	r.span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if route != "" {
		r.span.SetAttributes(keyRoute.String(route))
	}
	if reason != "" {
		r.span.SetAttributes(keyReason.String(reason))
	}
	if status >= 500 { // a server span's error (semantic conventions)
		r.span.SetStatus(codes.Error, reason)
	}
	r.span.End()
}
