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
	errOther    = "other"
)

var errKinds = []string{errRefused, errDial, errTimeout, errClosed, errProtocol, errOther}

// hostMetrics are one host's series. The two first keep the original
// Agimo's names and meaning, so existing KEDA queries keep working.
type hostMetrics struct {
	requests *metrics.Counter // agimo_requests_total: requests that matched this host
	active   *metrics.Gauge   // agimo_active_requests: parked + in flight + open tunnels
	parked   *metrics.Gauge   // agimo_parked_requests: waiting for readiness
	timeouts *metrics.Counter // agimo_park_timeouts_total: 503 after the park timeout
	rejected *metrics.Counter // agimo_park_rejected_total: 503 at once, max_parked reached
	errs     map[string]*metrics.Counter
	parkTime *promHistogram // agimo_park_duration_seconds: park to release
}

func newHostMetrics(set *metrics.Set, hists *histograms, host string) *hostMetrics {
	l := fmt.Sprintf("host=%q", host)
	m := &hostMetrics{
		requests: set.GetOrCreateCounter("agimo_requests_total{" + l + "}"),
		active:   set.GetOrCreateGauge("agimo_active_requests{"+l+"}", nil),
		parked:   set.GetOrCreateGauge("agimo_parked_requests{"+l+"}", nil),
		timeouts: set.GetOrCreateCounter("agimo_park_timeouts_total{" + l + "}"),
		rejected: set.GetOrCreateCounter("agimo_park_rejected_total{" + l + "}"),
		errs:     make(map[string]*metrics.Counter, len(errKinds)),
		parkTime: hists.get(l),
	}
	for _, k := range errKinds {
		m.errs[k] = set.GetOrCreateCounter(fmt.Sprintf("agimo_upstream_errors_total{%s,kind=%q}", l, k))
	}
	return m
}

// histograms holds a proxy's park histograms, written through one metrics
// writer so that the family has a single TYPE line.
type histograms struct {
	mu sync.Mutex // guards byLabels
	// byLabels maps a label set to its histogram; kept across config
	// reloads so a host's series never resets.
	byLabels map[string]*promHistogram
}

func newHistograms(set *metrics.Set) *histograms {
	h := &histograms{byLabels: make(map[string]*promHistogram)}
	set.RegisterMetricsWriter(h.write)
	return h
}

func (r *histograms) get(labels string) *promHistogram {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.byLabels[labels]
	if !ok {
		h = newPromHistogram("agimo_park_duration_seconds", labels, parkBuckets)
		r.byLabels[labels] = h
	}
	return h
}

func (r *histograms) write(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byLabels) == 0 {
		return
	}
	io.WriteString(w, "# HELP agimo_park_duration_seconds Time from a request being parked to its release.\n")
	io.WriteString(w, "# TYPE agimo_park_duration_seconds histogram\n")
	for _, l := range slices.Sorted(maps.Keys(r.byLabels)) {
		r.byLabels[l].writePrometheus(w)
	}
}
