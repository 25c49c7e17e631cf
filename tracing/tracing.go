// Package tracing exports a span per request through OpenTelemetry's Go
// SDK over OTLP/HTTP (issue 14), with child spans for the park, the
// wake-up and the upstream call. It is off by default, and free when off:
// a nil *Tracer starts nil *Requests, and every method of both is a nil
// check and a return, so a front end calls them without a branch of its
// own and allocates nothing.
//
// When on, Agimo's span continues the client's trace (W3C Trace Context,
// traceparent as parent) and the upstream gets a traceparent whose parent
// is Agimo's upstream span (§3.2); tracestate goes on as the client sent
// it. Export never holds a request up: spans queue in the SDK's batch
// span processor, whose bounded queue drops when full, and a failing
// collector is counted (agimo_tracing_export_errors_total), logged when
// export starts failing (not per export) and retried by the exporter
// with its exponential backoff.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Options configure a Tracer.
type Options struct {
	// Endpoint is the collector's OTLP/HTTP URL (CheckEndpoint); "": off.
	Endpoint string
	// Sample is the share of new traces recorded, 0 to 1; a client's
	// traceparent decides for its own (parent-based sampling).
	Sample  float64
	Log     zerolog.Logger
	Metrics *metrics.Set
}

// Tracer starts the requests' spans. A nil *Tracer is tracing off.
type Tracer struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TraceContext
	errs   *metrics.Counter
	log    zerolog.Logger
	// transport is the exporter's, closed at Shutdown.
	transport *http.Transport

	mu      sync.Mutex // exports run on the processor's goroutine and in Flush
	failing bool       // the last export failed
	logged  bool       // this run of failures was logged
	warned  time.Time  // when a failure was last logged
}

// warnEvery bounds the warnings of a collector that keeps failing and
// recovering: at most one per period.
const warnEvery = 5 * time.Minute

// exportTimeout bounds one post of a batch to the collector (the
// exporter's default).
const exportTimeout = 10 * time.Second

// retry is the exporter's backoff for a collector that times out or
// answers 429/502/503/504; a refused connection fails the batch at once.
// The processor's queue fills meanwhile and drops (its default size,
// 2048 spans).
var retry = otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 5 * time.Second,
	MaxInterval: 30 * time.Second, MaxElapsedTime: time.Minute}

// CheckEndpoint validates an --otlp-endpoint value and returns the URL
// spans are posted to: an http:// or https:// URL; with no path (or "/"),
// the OTLP/HTTP default /v1/traces is appended, as for
// OTEL_EXPORTER_OTLP_ENDPOINT; any other path is used as it is.
func CheckEndpoint(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("invalid --otlp-endpoint %q: want an http:// or https:// URL, e.g. http://otel-collector:4318", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// New starts the tracer o asks for, or returns nil if o.Endpoint is "".
// Nothing is sent before the first span: an unreachable collector is no
// error here.
func New(o Options) (*Tracer, error) {
	if o.Endpoint == "" {
		return nil, nil
	}
	endpoint, err := CheckEndpoint(o.Endpoint)
	if err != nil {
		return nil, err
	}
	if !(o.Sample >= 0 && o.Sample <= 1) {
		return nil, fmt.Errorf("invalid --otlp-sample %v: want a share from 0 to 1", o.Sample)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	// A transport of its own, whose idle connections Shutdown closes: the
	// exporter's default is shared by the package and never closed.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint),
		otlptracehttp.WithRetry(retry),
		otlptracehttp.WithHTTPClient(&http.Client{Transport: transport, Timeout: exportTimeout}))
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	t := &Tracer{errs: o.Metrics.GetOrCreateCounter("agimo_tracing_export_errors_total"), log: o.Log,
		transport: transport}
	t.tp = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(countingExporter{exp, t}),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.Sample))),
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("agimo"))),
	)
	t.tracer = t.tp.Tracer("github.com/agimo/agimo")
	return t, nil
}

// Flush exports the spans ended so far, or gives up when ctx is done.
func (t *Tracer) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.ForceFlush(ctx)
}

// Shutdown exports what is queued, within ctx, and stops the tracer:
// spans ended after are dropped.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	err := t.tp.Shutdown(ctx)
	t.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}

// countingExporter counts and logs the exporter's failures itself and
// reports none to the SDK, whose global error handler would log each one
// through the standard logger.
type countingExporter struct {
	sdktrace.SpanExporter
	t *Tracer
}

func (e countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	e.t.exported(err, len(spans))
	return nil
}

// exported notes an export's result: the first failure after successes
// (or the start) is logged, at most once per warnEvery, and its recovery
// too; every failure is counted.
func (t *Tracer) exported(err error, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		if t.failing && t.logged {
			t.log.Info().Msg("OTLP trace export recovered")
		}
		t.failing, t.logged = false, false
		return
	}
	t.errs.Inc()
	if t.failing {
		return
	}
	t.failing = true
	if !t.warned.IsZero() && time.Since(t.warned) < warnEvery {
		return
	}
	t.logged, t.warned = true, time.Now()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("collector did not answer in time: %w", err)
	}
	t.log.Warn().Err(err).Int("spans", n).
		Msg("OTLP trace export failed; spans are dropped while it fails, and export is retried")
}

// carrier holds the two W3C Trace Context fields for the propagator.
type carrier struct{ traceparent, tracestate string }

func (c *carrier) Get(key string) string {
	switch strings.ToLower(key) {
	case "traceparent":
		return c.traceparent
	case "tracestate":
		return c.tracestate
	}
	return ""
}

func (c *carrier) Set(key, v string) {
	switch strings.ToLower(key) {
	case "traceparent":
		c.traceparent = v
	case "tracestate":
		c.tracestate = v
	}
}

func (c *carrier) Keys() []string { return []string{"traceparent", "tracestate"} }
