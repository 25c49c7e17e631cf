package proxy

import (
	"fmt"
	"io"
	"math"
	"sync/atomic"
)

// promHistogram is a Prometheus histogram with fixed "le" buckets, which
// histogram_quantile reads. VictoriaMetrics/metrics v1.35 only has
// "vmrange" histograms, which Prometheus cannot aggregate (issue 2).
type promHistogram struct {
	name    string // metric name without suffix
	labels  string // `host="x"`
	bounds  []float64
	counts  []atomic.Uint64 // per bucket, not cumulative; last is +Inf
	sumBits atomic.Uint64   // float64 bits of the sum
	count   atomic.Uint64
}

// parkBuckets span a warm hit (sub-millisecond) to a slow cold start.
var parkBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newPromHistogram(name, labels string, bounds []float64) *promHistogram {
	return &promHistogram{name: name, labels: labels, bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records v seconds.
func (h *promHistogram) Observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.count.Add(1)
}

// writePrometheus writes the buckets, sum and count in text format. The
// caller writes the "# TYPE" line once per metric family.
func (h *promHistogram) writePrometheus(w io.Writer) {
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{%s,le=\"%g\"} %d\n", h.name, h.labels, b, cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", h.name, h.labels, cum)
	fmt.Fprintf(w, "%s_sum{%s} %g\n", h.name, h.labels, math.Float64frombits(h.sumBits.Load()))
	fmt.Fprintf(w, "%s_count{%s} %d\n", h.name, h.labels, cum)
}
