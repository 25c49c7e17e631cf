package proxy

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

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
	requests   *metrics.Counter          // agimo_requests_total: requests that matched this host
	active     *metrics.Gauge            // agimo_active_requests: parked + in flight + open tunnels
	parked     *metrics.Gauge            // agimo_parked_requests: waiting for readiness
	timeouts   *metrics.Counter          // agimo_park_timeouts_total: 503 after the park timeout
	rejected   *metrics.Counter          // agimo_park_rejected_total: 503 at once, max_parked reached
	probes     *metrics.Counter          // agimo_probe_requests_total: health checks, not activity
	wakes      *metrics.Counter          // agimo_wakeups_total: workloads raised from zero by Agimo
	wakeErrors *metrics.Counter          // agimo_wakeup_errors_total
	phases     map[string]*promHistogram // agimo_cold_start_seconds by phase
	errs       map[string]*metrics.Counter
	parkTime   *promHistogram // agimo_park_duration_seconds: park to release

	// agimo_client_errors_total by kind: requests that failed on the
	// client's side (an upload abandoned or stalled, a response not read).
	clientErrs map[string]*metrics.Counter
}

func newHostMetrics(set *metrics.Set, hists *histograms, host string) *hostMetrics {
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
		phases:     make(map[string]*promHistogram),
		errs:       make(map[string]*metrics.Counter, len(errKinds)),
		clientErrs: make(map[string]*metrics.Counter, len(clientKinds)),
		parkTime:   hists.park.get(l),
	}
	for _, ph := range coldPhases {
		m.phases[ph] = hists.cold.get(fmt.Sprintf("%s,phase=%q", l, ph))
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

func (m *hostMetrics) phase(name string) *promHistogram { return m.phases[name] }

// histograms are a proxy's histogram families.
type histograms struct {
	park, cold *histogramFamily
}

func newHistograms(set *metrics.Set) *histograms {
	return &histograms{
		park: newHistogramFamily(set, "agimo_park_duration_seconds", "Time from a request being parked to its release."),
		cold: newHistogramFamily(set, "agimo_cold_start_seconds", "Time from the first request parked on a cold service to each phase of its cold start."),
	}
}

// histogramFamily is one histogram metric with a series per label set,
// written through one metrics writer so that it has a single TYPE line.
type histogramFamily struct {
	name, help string
	mu         sync.Mutex // guards byLabels
	// byLabels maps a label set to its histogram; kept across config
	// reloads so a host's series never resets.
	byLabels map[string]*promHistogram
}

func newHistogramFamily(set *metrics.Set, name, help string) *histogramFamily {
	f := &histogramFamily{name: name, help: help, byLabels: make(map[string]*promHistogram)}
	set.RegisterMetricsWriter(f.write)
	return f
}

func (f *histogramFamily) get(labels string) *promHistogram {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.byLabels[labels]
	if !ok {
		h = newPromHistogram(f.name, labels, parkBuckets)
		f.byLabels[labels] = h
	}
	return h
}

func (f *histogramFamily) write(w io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.byLabels) == 0 {
		return
	}
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", f.name, f.help, f.name)
	for _, l := range slices.Sorted(maps.Keys(f.byLabels)) {
		f.byLabels[l].writePrometheus(w)
	}
}
