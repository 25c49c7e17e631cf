// Package stats holds Agimo's Prometheus series: one set per host, shared
// by every front end (HTTP/1.1, HTTP/2), the kinds of upstream and client
// errors, and the admin listener that exposes them with their help texts.
package stats

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// Upstream error kinds, the "kind" label of agimo_upstream_errors_total.
const (
	UpstreamRefused  = "refused"  // connection refused (retried until the deadline)
	UpstreamDial     = "dial"     // other dial failures
	UpstreamTimeout  = "timeout"  // upstream silent past upstream_timeout (504)
	UpstreamClosed   = "closed"   // connection closed or reset before a response
	UpstreamProtocol = "protocol" // malformed response
	// No free connection to the endpoint within the service's timeout
	// (503 with Retry-After).
	UpstreamPoolFull = "pool_full"
	UpstreamOther    = "other"
)

// UpstreamKinds are every kind, in the order series are made.
var UpstreamKinds = []string{UpstreamRefused, UpstreamDial, UpstreamTimeout, UpstreamClosed, UpstreamProtocol, UpstreamPoolFull, UpstreamOther}

// Client error kinds, the "kind" label of agimo_client_errors_total:
// failures on the client's side of a request, which no client can make
// count as upstream errors (issue 10).
const (
	ClientAborted     = "aborted"      // the client closed or reset its connection before the end of its body
	ClientBodyTimeout = "body_timeout" // no byte of the body for client_body_timeout (408)
	ClientSendTimeout = "send_timeout" // no byte of the response taken for send_timeout
	ClientBadBody     = "bad_body"     // malformed body, such as a bad chunk (400)
)

// ClientKinds are every client error kind.
var ClientKinds = []string{ClientAborted, ClientBodyTimeout, ClientSendTimeout, ClientBadBody}

// Host is one host's series. The two first keep the original
// Agimo's names and meaning, so existing KEDA queries keep working.
type Host struct {
	Requests   *metrics.Counter                        // agimo_requests_total: requests that matched this host
	Active     *metrics.Gauge                          // agimo_active_requests: parked + in flight + open tunnels
	Parked     *metrics.Gauge                          // agimo_parked_requests: waiting for readiness
	Timeouts   *metrics.Counter                        // agimo_park_timeouts_total: 503 after the park timeout
	Rejected   *metrics.Counter                        // agimo_park_rejected_total: 503 at once, max_parked reached
	Probes     *metrics.Counter                        // agimo_probe_requests_total: health checks, not activity
	Wakes      *metrics.Counter                        // agimo_wakeups_total: workloads raised from zero by Agimo
	WakeErrors *metrics.Counter                        // agimo_wakeup_errors_total
	Phases     map[string]*metrics.PrometheusHistogram // agimo_cold_start_seconds by phase
	Errs       map[string]*metrics.Counter
	ParkTime   *metrics.PrometheusHistogram // agimo_park_duration_seconds: park to release
	// agimo_client_errors_total by kind: requests that failed on the
	// client's side (an upload abandoned or stalled, a response not read).
	ClientErrs map[string]*metrics.Counter
}

// ParkBuckets span a warm hit (sub-millisecond) to a slow cold start.
var ParkBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// NewHost returns host's series. The set keeps one series per name,
// so a host's series carry over a config reload instead of resetting.
func NewHost(set *metrics.Set, host string) *Host {
	l := fmt.Sprintf("host=%q", host)
	m := &Host{
		Requests:   set.GetOrCreateCounter("agimo_requests_total{" + l + "}"),
		Active:     set.GetOrCreateGauge("agimo_active_requests{"+l+"}", nil),
		Parked:     set.GetOrCreateGauge("agimo_parked_requests{"+l+"}", nil),
		Timeouts:   set.GetOrCreateCounter("agimo_park_timeouts_total{" + l + "}"),
		Rejected:   set.GetOrCreateCounter("agimo_park_rejected_total{" + l + "}"),
		Probes:     set.GetOrCreateCounter("agimo_probe_requests_total{" + l + "}"),
		Wakes:      set.GetOrCreateCounter("agimo_wakeups_total{" + l + "}"),
		WakeErrors: set.GetOrCreateCounter("agimo_wakeup_errors_total{" + l + "}"),
		Phases:     make(map[string]*metrics.PrometheusHistogram),
		Errs:       make(map[string]*metrics.Counter, len(UpstreamKinds)),
		ParkTime:   set.GetOrCreatePrometheusHistogramExt("agimo_park_duration_seconds{"+l+"}", ParkBuckets),
		ClientErrs: make(map[string]*metrics.Counter, len(ClientKinds)),
	}
	for _, ph := range ColdPhases {
		m.Phases[ph] = set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf("agimo_cold_start_seconds{%s,phase=%q}", l, ph), ParkBuckets)
	}
	for _, k := range UpstreamKinds {
		m.Errs[k] = set.GetOrCreateCounter(fmt.Sprintf("agimo_upstream_errors_total{%s,kind=%q}", l, k))
	}
	for _, k := range ClientKinds {
		m.ClientErrs[k] = set.GetOrCreateCounter(fmt.Sprintf("agimo_client_errors_total{%s,kind=%q}", l, k))
	}
	return m
}

// ColdPhases are the cold-start phases timed from the first parked
// request: the scale-up issued (wake = true), the first endpoint ready,
// the first response byte forwarded.
var ColdPhases = []string{"scale", "ready", "first_byte"}

// Phase returns the histogram of one of ColdPhases.
func (m *Host) Phase(name string) *metrics.PrometheusHistogram { return m.Phases[name] }
