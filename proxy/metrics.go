package proxy

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// Upstream error kinds, the "kind" label of agimo_upstream_errors_total.
const (
	errRefused  = "refused"  // connection refused (retried until the deadline)
	errDial     = "dial"     // other dial failures
	errTimeout  = "timeout"  // upstream silent past upstream_timeout (504)
	errClosed   = "closed"   // connection closed or reset before a response
	errProtocol = "protocol" // malformed response
	// No free connection to the endpoint within the service's timeout
	// (503 with Retry-After).
	errPoolFull = "pool_full"
	errOther    = "other"
)

var errKinds = []string{errRefused, errDial, errTimeout, errClosed, errProtocol, errPoolFull, errOther}

// Client error kinds, the "kind" label of agimo_client_errors_total:
// failures on the client's side of a request, which no client can make
// count as upstream errors (issue 10).
const (
	clientAborted     = "aborted"      // the client closed or reset its connection before the end of its body
	clientBodyTimeout = "body_timeout" // no byte of the body for client_body_timeout (408)
	clientSendTimeout = "send_timeout" // no byte of the response taken for send_timeout
	clientBadBody     = "bad_body"     // malformed body, such as a bad chunk (400)
)

var clientKinds = []string{clientAborted, clientBodyTimeout, clientSendTimeout, clientBadBody}

// hostMetrics are one host's series. The two first keep the original
// Agimo's names and meaning, so existing KEDA queries keep working.
type hostMetrics struct {
	requests   *metrics.Counter                        // agimo_requests_total: requests that matched this host
	active     *metrics.Gauge                          // agimo_active_requests: parked + in flight + open tunnels
	parked     *metrics.Gauge                          // agimo_parked_requests: waiting for readiness
	timeouts   *metrics.Counter                        // agimo_park_timeouts_total: 503 after the park timeout
	rejected   *metrics.Counter                        // agimo_park_rejected_total: 503 at once, max_parked reached
	probes     *metrics.Counter                        // agimo_probe_requests_total: health checks, not activity
	wakes      *metrics.Counter                        // agimo_wakeups_total: workloads raised from zero by Agimo
	wakeErrors *metrics.Counter                        // agimo_wakeup_errors_total
	phases     map[string]*metrics.PrometheusHistogram // agimo_cold_start_seconds by phase
	errs       map[string]*metrics.Counter
	parkTime   *metrics.PrometheusHistogram // agimo_park_duration_seconds: park to release
	// agimo_client_errors_total by kind: requests that failed on the
	// client's side (an upload abandoned or stalled, a response not read).
	clientErrs map[string]*metrics.Counter
}

// parkBuckets span a warm hit (sub-millisecond) to a slow cold start.
var parkBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// newHostMetrics returns host's series. The set keeps one series per name,
// so a host's series carry over a config reload instead of resetting.
func newHostMetrics(set *metrics.Set, host string) *hostMetrics {
	l := fmt.Sprintf("host=%q", host)
	m := &hostMetrics{
		requests:   set.GetOrCreateCounter("agimo_requests_total{" + l + "}"),
		active:     set.GetOrCreateGauge("agimo_active_requests{"+l+"}", nil),
		parked:     set.GetOrCreateGauge("agimo_parked_requests{"+l+"}", nil),
		timeouts:   set.GetOrCreateCounter("agimo_park_timeouts_total{" + l + "}"),
		rejected:   set.GetOrCreateCounter("agimo_park_rejected_total{" + l + "}"),
		probes:     set.GetOrCreateCounter("agimo_probe_requests_total{" + l + "}"),
		wakes:      set.GetOrCreateCounter("agimo_wakeups_total{" + l + "}"),
		wakeErrors: set.GetOrCreateCounter("agimo_wakeup_errors_total{" + l + "}"),
		phases:     make(map[string]*metrics.PrometheusHistogram),
		errs:       make(map[string]*metrics.Counter, len(errKinds)),
		parkTime:   set.GetOrCreatePrometheusHistogramExt("agimo_park_duration_seconds{"+l+"}", parkBuckets),
		clientErrs: make(map[string]*metrics.Counter, len(clientKinds)),
	}
	for _, ph := range coldPhases {
		m.phases[ph] = set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf("agimo_cold_start_seconds{%s,phase=%q}", l, ph), parkBuckets)
	}
	for _, k := range errKinds {
		m.errs[k] = set.GetOrCreateCounter(fmt.Sprintf("agimo_upstream_errors_total{%s,kind=%q}", l, k))
	}
	for _, k := range clientKinds {
		m.clientErrs[k] = set.GetOrCreateCounter(fmt.Sprintf("agimo_client_errors_total{%s,kind=%q}", l, k))
	}
	return m
}

// coldPhases are the cold-start phases timed from the first parked
// request: the scale-up issued (wake = true), the first endpoint ready,
// the first response byte forwarded.
var coldPhases = []string{"scale", "ready", "first_byte"}

func (m *hostMetrics) phase(name string) *metrics.PrometheusHistogram { return m.phases[name] }
