package main

import (
	"math"
	"runtime"
	"slices"

	"github.com/agimo/agimo/bench/load"
	"github.com/agimo/agimo/bench/report"
)

// cellKey names one throughput figure: a scenario at a connection count
// in a layout.
type cellKey struct {
	Layout, Scenario string
	Conns            int
}

// cell holds a figure's runs by target, each indexed by repetition (nil
// where a repetition is missing), so ratios pair runs of the same
// repetition.
type cell struct {
	key      cellKey
	targets  []string // in order of first appearance
	byTarget map[string][]*ThroughputRun
}

func groupRuns(runs []ThroughputRun, reps int) []*cell {
	var cells []*cell
	idx := map[cellKey]*cell{}
	for i := range runs {
		r := &runs[i]
		k := cellKey{r.Layout, r.Scenario, r.Conns}
		c, ok := idx[k]
		if !ok {
			c = &cell{key: k, byTarget: map[string][]*ThroughputRun{}}
			idx[k] = c
			cells = append(cells, c)
		}
		if _, ok := c.byTarget[r.Target]; !ok {
			c.targets = append(c.targets, r.Target)
			c.byTarget[r.Target] = make([]*ThroughputRun, reps)
		}
		if r.Rep < reps {
			c.byTarget[r.Target][r.Rep] = r
		}
	}
	// Direct first, then agimo, then the rest: the order tables read in.
	for _, c := range cells {
		slices.SortStableFunc(c.targets, func(a, b string) int { return targetRank(a) - targetRank(b) })
	}
	return cells
}

func targetRank(t string) int {
	switch t {
	case tDirect:
		return 0
	case tAgimo:
		return 1
	case tAgimoLog:
		return 2
	case tNginx:
		return 3
	case tRelay:
		return 4
	}
	return 5
}

// fig extracts one figure per repetition; NaN where the run is missing
// or failed.
func (c *cell) fig(target string, f func(*ThroughputRun) float64) []float64 {
	runs := c.byTarget[target]
	out := make([]float64, len(runs))
	for i, r := range runs {
		if r == nil || r.Error != "" || r.Result == nil {
			out[i] = math.NaN()
			continue
		}
		out[i] = f(r)
	}
	return out
}

// unit is a scenario's headline figure: what is counted and how.
type unit struct {
	Name   string // "req/s"
	PerOp  string // what CPU time is divided by: "req"
	Per    func(*load.Result) float64
	Amount func(*load.Result) float64 // total units in the measured window
}

func unitOf(scenario string) unit {
	switch scenario {
	case "ws-throughput":
		mib := func(r *load.Result) float64 { return float64(r.Bytes) / (1 << 20) }
		return unit{"MiB/s", "MiB", func(r *load.Result) float64 { return r.BytesPerSec() / (1 << 20) }, mib}
	case "sse":
		return unit{"events/s", "event", (*load.Result).EventsPerSec, func(r *load.Result) float64 { return float64(r.Events) }}
	case "ws-echo":
		return unit{"round trips/s", "round trip", (*load.Result).OpsPerSec, func(r *load.Result) float64 { return float64(r.Ops) }}
	case "tls-handshakes":
		return unit{"handshakes/s", "handshake", (*load.Result).OpsPerSec, func(r *load.Result) float64 { return float64(r.Ops) }}
	case "grpc-unary":
		return unit{"calls/s", "call", (*load.Result).OpsPerSec, func(r *load.Result) float64 { return float64(r.Ops) }}
	}
	return unit{"req/s", "req", (*load.Result).OpsPerSec, func(r *load.Result) float64 { return float64(r.Ops) }}
}

// Per-run figures.
func (u unit) rate(r *ThroughputRun) float64 { return u.Per(r.Result) }

func quantileMS(q float64) func(*ThroughputRun) float64 {
	return func(r *ThroughputRun) float64 {
		if q >= 1 {
			return ms(r.Result.Latency.Max())
		}
		return ms(r.Result.Latency.Quantile(q))
	}
}

func ms[D ~int64](d D) float64 { return float64(d) / 1e6 }

// cpuPer is the proxy's CPU microseconds per unit (NaN for direct, which
// has no proxy).
func (u unit) cpuPer(r *ThroughputRun) float64 {
	n := u.Amount(r.Result)
	if n == 0 || r.Target == tDirect || r.WindowS <= 0 {
		return math.NaN()
	}
	return r.ProxyCPU * 1e6 / n
}

func errorsOf(r *ThroughputRun) float64 { return float64(r.Result.Errors) }

// otherLoad is the share of the machine's CPU that processes outside the
// suite used during the run's measured window.
func otherLoad(r *ThroughputRun) float64 {
	if r.WindowS <= 0 {
		return math.NaN()
	}
	return r.OtherCPU / (r.WindowS * float64(runtime.NumCPU()))
}

// ratio is the per-repetition ratio a/b of figure f, summarised.
func (c *cell) ratio(a, b string, f func(*ThroughputRun) float64) report.Spread {
	if c.byTarget[a] == nil || c.byTarget[b] == nil {
		return report.Of(nil)
	}
	return report.Of(report.Ratios(c.fig(a, f), c.fig(b, f)))
}

// mergedLatency merges a target's histograms over the repetitions, for
// the plot.
func (c *cell) mergedLatency(target string) *load.Hist {
	h := load.NewHist()
	for _, r := range c.byTarget[target] {
		if r != nil && r.Result != nil && r.Result.Latency != nil {
			h.Merge(r.Result.Latency)
		}
	}
	return h
}

// releaseGroup holds one layout's release runs for one N.
type releaseGroup struct {
	Layout string
	N      int
	Runs   []*ReleaseRun
}

func groupReleases(rs []ReleaseRun) []*releaseGroup {
	type key struct {
		layout string
		n      int
	}
	var out []*releaseGroup
	for _, runs := range groupBy(rs, func(r *ReleaseRun) key { return key{r.Layout, r.N} }) {
		out = append(out, &releaseGroup{Layout: runs[0].Layout, N: runs[0].N, Runs: runs})
	}
	return out
}

// fig is one figure per release run; NaN for a run that answered none.
func (g *releaseGroup) fig(f func(*ReleaseRun) float64) []float64 {
	return figures(g.Runs, func(r *ReleaseRun) bool { return r.Latency != nil && r.Latency.Count() > 0 }, f)
}

// capGroup holds the capacity runs of one scenario, target and N.
type capGroup struct {
	Scenario, Target string
	N                int
	Runs             []*CapacityRun
}

func groupCapacity(rs []CapacityRun) []*capGroup {
	type key struct {
		scenario, target string
		n                int
	}
	var out []*capGroup
	for _, runs := range groupBy(rs, func(r *CapacityRun) key { return key{r.Scenario, r.Target, r.N} }) {
		out = append(out, &capGroup{Scenario: runs[0].Scenario, Target: runs[0].Target, N: runs[0].N, Runs: runs})
	}
	return out
}

// fig is one figure per successful capacity run.
func (g *capGroup) fig(f func(*CapacityRun) float64) []float64 {
	return figures(g.Runs, func(r *CapacityRun) bool { return r.Error == "" && r.Opened > 0 }, f)
}

// groupBy groups rs by key, groups and runs in order of first appearance.
func groupBy[R any, K comparable](rs []R, key func(*R) K) [][]*R {
	idx := map[K]int{}
	var out [][]*R
	for i := range rs {
		r := &rs[i]
		k := key(r)
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, nil)
		}
		out[j] = append(out[j], r)
	}
	return out
}

// figures is f of each run, NaN (no figure) for a run ok rejects.
func figures[R any](runs []*R, ok func(*R) bool, f func(*R) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		if !ok(r) {
			out[i] = math.NaN()
			continue
		}
		out[i] = f(r)
	}
	return out
}

func perItem(before, after func(*CapacityRun) float64) func(*CapacityRun) float64 {
	return func(r *CapacityRun) float64 { return (after(r) - before(r)) / float64(r.Opened) }
}
