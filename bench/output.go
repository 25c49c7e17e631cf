package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/agimo/agimo/bench/report"
)

// writeResults prints the Markdown report and writes it, the JSON and
// the SVG plot into a new timestamped directory under -out.
func (s *suite) writeResults(stdout io.Writer) error {
	md := renderMarkdown(s.res, s.o.reps)
	fmt.Fprint(stdout, md)
	dir := s.outDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	js, err := json.MarshalIndent(s.res, "", " ")
	if err != nil {
		return fmt.Errorf("results json: %w", err)
	}
	files := map[string][]byte{
		"results.json": js,
		"results.md":   []byte(md),
		"latency.svg":  latencyPlot(s.res, s.o.reps),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	fmt.Fprintf(os.Stderr, "bench: results in %s (results.md, results.json, latency.svg)\n", dir)
	return nil
}

// rerender rebuilds results.md and latency.svg beside a results.json, so
// a change to the report's layout does not need a new run.
func rerender(path string, stdout io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("render %s: %w", path, err)
	}
	md := renderMarkdown(&res, res.Settings.Reps)
	dir := filepath.Dir(path)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latency.svg"), latencyPlot(&res, res.Settings.Reps), 0o644); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	fmt.Fprint(stdout, md)
	return nil
}

// renderMarkdown is the report: machine and settings, then per layout the
// throughput tables and ratios, then release, capacity, the goals and any
// failures.
func renderMarkdown(res *Results, reps int) string {
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "## Agimo bench results\n\n")
	fmt.Fprintf(&b, "- Machine: %d × %s, %s, Linux %s; %s; nginx %s; agimo %s\n", m.CPUs, m.CPUModel, m.MemoryGB, m.Kernel, m.Go, orDash(m.Nginx), orDash(m.Commit))
	if len(m.TreeChanges) > 0 {
		fmt.Fprintf(&b, "- Built from a tree with uncommitted changes to agimo: %s\n", strings.Join(m.TreeChanges, ", "))
	}
	fmt.Fprintf(&b, "- Command: `%s` (scenarios ran %.0f s)\n", res.Command, res.Seconds)
	set := res.Settings
	fmt.Fprintf(&b, "- Each figure: median of %d repetitions (min–max in brackets), each run %gs measured after %gs warm-up; targets interleaved, their order rotated per repetition; ratios are taken per repetition, then the median.\n",
		set.Reps, set.DurationS, set.WarmupS)
	if set.Smoke {
		b.WriteString("- **Smoke run**: durations and counts are far too small for the figures to mean anything.\n")
	}
	b.WriteString("- Scenarios: ")
	var ran []string
	for _, sc := range scenarios {
		if slices.ContainsFunc(res.Runs, func(r ThroughputRun) bool { return r.Scenario == sc.name }) ||
			slices.ContainsFunc(res.Capacity, func(r CapacityRun) bool { return r.Scenario == sc.name }) ||
			(sc.kind == release && len(res.Releases) > 0) || (sc.kind == scale && len(res.Scale) > 0) {
			ran = append(ran, fmt.Sprintf("`%s` %s", sc.name, sc.summary))
		}
	}
	b.WriteString(strings.Join(ran, "; ") + ".\n\n")
	cells := groupRuns(res.Runs, reps)
	for _, lay := range res.Layouts {
		var mine []*cell
		for _, c := range cells {
			if c.key.Layout == lay.Name {
				mine = append(mine, c)
			}
		}
		if len(mine) == 0 {
			continue
		}
		fmt.Fprintf(&b, "### Throughput and latency, layout `%s`\n\n%s. "+
			"Latency of SSE is the time to the first event; proxy CPU per op is the proxy's user+system time over the measured window "+
			"divided by the ops in it; others' CPU is what processes outside the suite used of the machine meanwhile (noise).\n\n", lay.Name, lay.Desc)
		b.WriteString(throughputTable(mine).Markdown())
		b.WriteString("\n")
		if t := ratioTable(mine); len(t.Rows) > 0 {
			fmt.Fprintf(&b, "#### Ratios, layout `%s` (per repetition, median and range)\n\n", lay.Name)
			b.WriteString(t.Markdown())
			b.WriteString("\n")
		}
		if t := accessLogTable(mine); len(t.Rows) > 0 {
			fmt.Fprintf(&b, "#### Access log on vs off, layout `%s` (per repetition, median and range)\n\n%s\n\n", lay.Name, accessLogDesc)
			b.WriteString(t.Markdown())
			b.WriteString("\n")
		}
	}
	if len(res.Releases) > 0 {
		b.WriteString("### Release: parked requests freed by one EndpointSlice update\n\nTime from sending the update to each response received; the API call's own duration for reference.\n\n")
		b.WriteString(releaseTable(groupReleases(res.Releases)).Markdown())
		b.WriteString("\n")
	}
	if len(res.Capacity) > 0 {
		b.WriteString("### Capacity: memory per parked request and per idle tunnel\n\nRSS growth of a fresh process from idle to N held, divided by N; Go heap and stack from Agimo's /metrics.\n\n")
		b.WriteString(capacityTable(groupCapacity(res.Capacity)).Markdown())
		b.WriteString("\n")
	}
	if len(res.Scale) > 0 {
		b.WriteString("### Scale: cost of configured services\n\nA fresh agimo per count and repetition, configured with N services (half on wildcard hosts *.sI.bench), " +
			"each a Service with a ready EndpointSlice in a namespace holding exactly those; time from process start to /readyz answering 200, " +
			"RSS once settled, RSS per service over the smallest count, and http-small's proxy CPU per request to the last exact host and to a name " +
			"under the last wildcard, each divided by the smallest count's to its exact host in the same repetition.\n\n")
		b.WriteString(scaleTable(groupScale(res.Scale, reps)).Markdown())
		b.WriteString("\n")
	}
	b.WriteString("### Goals (issues 5, 11, 13 and 14)\n\n")
	b.WriteString(goalsTable(res, reps).Markdown())
	b.WriteString("\n")
	if len(res.Profiles) > 0 {
		b.WriteString("### Profiles (-profile: one extra agimo run per figure under perf, not counted above)\n\n")
		for _, p := range res.Profiles {
			what := fmt.Sprintf("c=%d (%s %s)", p.Conns, report.Num(p.Rate), unitOf(p.Scenario).Name)
			if i := slices.IndexFunc(scenarios, func(s *scenario) bool { return s.name == p.Scenario }); i < 0 || scenarios[i].kind != throughput {
				what = fmt.Sprintf("n=%s", report.Num(float64(p.Conns)))
			}
			fmt.Fprintf(&b, "- %s %s %s: %s\n", p.Layout, p.Scenario, what, p.Report)
		}
		b.WriteString("\n")
	}
	if len(res.Notes) > 0 {
		b.WriteString("### Notes\n\n")
		for _, n := range res.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	if len(res.Failures) > 0 {
		b.WriteString("### Failures\n\n")
		for _, f := range res.Failures {
			fmt.Fprintf(&b, "- %s / %s: %s\n", f.Layout, f.Scenario, strings.ReplaceAll(f.Error, "\n", " "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// withUnit prints "median unit (min–max)".
func withUnit(s report.Spread, unit string) string {
	m, rng, _ := strings.Cut(s.Format(report.Num), " ")
	if rng != "" {
		rng = " " + rng
	}
	return m + " " + unit + rng
}

func percent(x float64) string { return report.Num(100*x) + "%" }

func fmtCount(n int) string { return report.Num(float64(n)) }

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func throughputTable(cells []*cell) *report.Table {
	t := &report.Table{
		Header: []string{"scenario", "conns", "target", "throughput", "p50", "p90", "p99", "p99.9", "max", "errors", "proxy CPU per op", "others' CPU"},
		Right:  map[int]bool{1: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true, 10: true, 11: true},
	}
	for _, c := range cells {
		u := unitOf(c.key.Scenario)
		for _, tg := range c.targets {
			thr := report.Of(c.fig(tg, u.rate))
			cpu := report.Of(c.fig(tg, u.cpuPer))
			cpuS := "–"
			if cpu.N > 0 {
				cpuS = report.Num(cpu.Median) + " µs/" + u.PerOp
			}
			t.Add(c.key.Scenario, fmt.Sprint(c.key.Conns), tg,
				withUnit(thr, u.Name),
				report.Millis(report.Of(c.fig(tg, quantileMS(.5))).Median),
				report.Millis(report.Of(c.fig(tg, quantileMS(.9))).Median),
				report.Of(c.fig(tg, quantileMS(.99))).Format(report.Millis),
				report.Millis(report.Of(c.fig(tg, quantileMS(.999))).Median),
				report.Millis(report.Of(c.fig(tg, quantileMS(1))).Median),
				report.Num(sum(c.fig(tg, errorsOf))),
				cpuS,
				report.Of(c.fig(tg, otherLoad)).Format(percent))
		}
	}
	return t
}

func ratioTable(cells []*cell) *report.Table {
	t := &report.Table{
		Header: []string{"scenario", "conns", "agimo / nginx throughput", "agimo / direct throughput", "agimo / nginx p99", "agimo / nginx CPU per op",
			"agimo / go-relay throughput", "agimo / go-relay CPU per op"},
		Right: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true},
	}
	for _, c := range cells {
		if c.byTarget[tAgimoLog] != nil {
			continue // agimo against itself: accessLogTable
		}
		u := unitOf(c.key.Scenario)
		t.Add(c.key.Scenario, fmt.Sprint(c.key.Conns),
			c.ratio(tAgimo, tNginx, u.rate).Format(report.Ratio),
			c.ratio(tAgimo, tDirect, u.rate).Format(report.Ratio),
			c.ratio(tAgimo, tNginx, quantileMS(.99)).Format(report.Ratio),
			c.ratio(tAgimo, tNginx, u.cpuPer).Format(report.Ratio),
			c.ratio(tAgimo, tRelay, u.rate).Format(report.Ratio),
			c.ratio(tAgimo, tRelay, u.cpuPer).Format(report.Ratio))
	}
	return t
}

func releaseTable(gs []*releaseGroup) *report.Table {
	t := &report.Table{
		Header: []string{"layout", "parked", "answered", "API call", "first", "p50", "p99", "last", "errors",
			"same burst, direct", "same burst, via agimo", "last / direct burst"},
		Right: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true, 10: true, 11: true},
	}
	for _, g := range gs {
		var answered, errs []float64
		var api []float64
		for _, r := range g.Runs {
			answered = append(answered, float64(r.Answered))
			errs = append(errs, float64(r.Errors))
			api = append(api, r.APICallMS)
		}
		q := func(p float64) func(*ReleaseRun) float64 {
			return func(r *ReleaseRun) float64 { return ms(r.Latency.Quantile(p)) }
		}
		t.Add(g.Layout, report.Num(float64(g.N)), report.Num(report.Of(answered).Median),
			report.Millis(report.Of(api).Median),
			report.Millis(report.Of(g.fig(func(r *ReleaseRun) float64 { return ms(r.Latency.Min()) })).Median),
			report.Millis(report.Of(g.fig(q(.5))).Median),
			report.Millis(report.Of(g.fig(q(.99))).Median),
			report.Of(g.fig(func(r *ReleaseRun) float64 { return ms(r.Latency.Max()) })).Format(report.Millis),
			report.Num(sum(errs)),
			report.Of(g.fig(func(r *ReleaseRun) float64 { return positive(r.BurstDirectMS) })).Format(report.Millis),
			report.Of(g.fig(func(r *ReleaseRun) float64 { return positive(r.BurstAgimoMS) })).Format(report.Millis),
			report.Of(g.fig(releaseVsBurst)).Format(report.Ratio))
	}
	return t
}

func capacityTable(gs []*capGroup) *report.Table {
	t := &report.Table{
		Header: []string{"scenario", "target", "N", "RSS idle → held", "RSS per item", "goroutines per item", "Go heap per item", "Go stacks per item"},
		Right:  map[int]bool{2: true, 3: true, 4: true, 5: true, 6: true, 7: true},
	}
	kib := func(x float64) string { return report.Num(x/1024) + " KiB" }
	mib := func(x float64) string { return report.Num(x / (1 << 20)) }
	for _, g := range gs {
		before := report.Of(g.fig(func(r *CapacityRun) float64 { return float64(r.RSSBefore) }))
		after := report.Of(g.fig(func(r *CapacityRun) float64 { return float64(r.RSSAfter) }))
		per := report.Of(g.fig(func(r *CapacityRun) float64 { return r.PerItem() }))
		row := []string{g.Scenario, g.Target, report.Num(float64(g.N)),
			mib(before.Median) + " → " + mib(after.Median) + " MiB", per.Format(kib), "–", "–", "–"}
		if g.Target == tAgimo {
			row[5] = report.Num(report.Of(g.fig(perItem(
				func(r *CapacityRun) float64 { return r.GoroutinesBefore },
				func(r *CapacityRun) float64 { return r.GoroutinesAfter }))).Median)
			row[6] = kib(report.Of(g.fig(perItem(
				func(r *CapacityRun) float64 { return r.HeapBefore },
				func(r *CapacityRun) float64 { return r.HeapAfter }))).Median)
			row[7] = kib(report.Of(g.fig(perItem(
				func(r *CapacityRun) float64 { return r.StackBefore },
				func(r *CapacityRun) float64 { return r.StackAfter }))).Median)
		}
		t.Add(row...)
	}
	return t
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		if x == x { // not NaN
			s += x
		}
	}
	return s
}

// releaseVsBurst is a release's last response over the time the same
// number of requests sent at once took straight to the upstream, in the
// same repetition.
func releaseVsBurst(r *ReleaseRun) float64 {
	if r.BurstDirectMS <= 0 {
		return math.NaN()
	}
	return ms(r.Latency.Max()) / r.BurstDirectMS
}

// positive is x, or NaN (no figure) if x is not positive.
func positive(x float64) float64 {
	if x <= 0 {
		return math.NaN()
	}
	return x
}
