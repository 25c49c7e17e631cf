package main

import (
	"fmt"
	"math"
	"slices"

	"github.com/agimo/agimo/bench/load"
	"github.com/agimo/agimo/bench/report"
)

// Issue 5's goals for Agimo on a 2-core machine.
const (
	goalVsNginx    = 1.1 // keep-alive throughput, × nginx's (issue 13: ≥ 1.1× the fair nginx)
	goalVsDirect   = 0.6 // keep-alive throughput, × direct
	goalWSvsDirect = 0.9 // WebSocket echo round trips, × direct
	goalReleaseMS  = 100 // all of 10,000 parked answered within, after the event
	goalParkedKiB  = 8   // per parked request
	goalTunnelKiB  = 16  // per idle tunnel
)

// Issue 13's goals.
const (
	// Agimo splices where a Go proxy copies: it should do at least the
	// WebSocket echo round trips of the plain copy loop (relay.go).
	goalWSvsRelay = 1.0
	// WebSocket echo 64 B round trips, × nginx's.
	goalWSvsNginx = 1.2
	// Proxy CPU per request (keep-alive HTTP) and per SSE event, × nginx's.
	goalCPUvsNginx = 1.0
	// Release of 10,000 parked requests, × the same burst sent straight
	// to the upstream.
	goalReleaseVsBurst = 1.5
	// Open descriptors per idle WebSocket tunnel (nginx: 2).
	goalTunnelFDs = 3
	// Per parked request when the clients arrive all at once, at 10,000.
	goalParkedAtOnceKiB = 6
	// CPU per request with 10,000 configured services (the largest count
	// measured), × with one.
	goalScaleCPU = 1.05
)

// Issue 11's goals (the edge: TLS, HTTP/2, gRPC).
const (
	// HTTPS keep-alive and HTTP/2 (h2 and h2c) throughput, × nginx's.
	goalEdgeVsNginx = 1.0
	// New TLS handshakes per second, × nginx's.
	goalHandshakesVsNginx = 0.8
)

// Issue 14's goal: the access log on (every request, JSON) costs at most
// this much proxy CPU per keep-alive request, × the same agimo with it off.
const goalAccessLogCPU = 1.10

// goalsTable lists each goal with the measured figure and whether it is
// met (judged on the median; the range shows how sure that is).
func goalsTable(res *Results, reps int) *report.Table {
	t := &report.Table{Header: []string{"goal", "layout", "case", "measured", "met"}, Right: map[int]bool{3: true}}
	met := func(s report.Spread, ok func(float64) bool) string {
		switch {
		case s.N == 0:
			return "not measured"
		case ok(s.Median):
			return "yes"
		}
		return "**no**"
	}
	cells := groupRuns(res.Runs, reps)
	for _, lay := range res.Layouts {
		for _, c := range cells {
			k := c.key
			if k.Layout != lay.Name {
				continue
			}
			u := unitOf(k.Scenario)
			name := fmt.Sprintf("%s, %d conns", k.Scenario, k.Conns)
			switch k.Scenario {
			case "http-small", "http-4k":
				r := c.ratio(tAgimo, tNginx, u.rate)
				t.Add(fmt.Sprintf("throughput ≥ %.1f× nginx", goalVsNginx), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x >= goalVsNginx }))
				r = c.ratio(tAgimo, tDirect, u.rate)
				t.Add(fmt.Sprintf("throughput ≥ %.1f× direct", goalVsDirect), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x >= goalVsDirect }))
				r = c.ratio(tAgimo, tNginx, u.cpuPer)
				t.Add(fmt.Sprintf("proxy CPU per request ≤ %.1f× nginx's", goalCPUvsNginx), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x <= goalCPUvsNginx }))
				r = c.ratio(tAgimo, tNginx, quantileMS(.99))
				t.Add("p99 ≤ nginx's", lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x <= 1 }))
			case "access-log":
				r := c.ratio(tAgimoLog, tAgimo, u.cpuPer)
				thr := c.ratio(tAgimoLog, tAgimo, u.rate)
				t.Add(fmt.Sprintf("access log on: CPU per request ≤ %.2f× off", goalAccessLogCPU), lay.Name, name,
					r.Format(report.Ratio)+"; throughput "+thr.Format(report.Ratio),
					met(r, func(x float64) bool { return x <= goalAccessLogCPU }))
			case "https-keepalive", "h2", "h2c":
				r := c.ratio(tAgimo, tNginx, u.rate)
				t.Add(fmt.Sprintf("throughput ≥ %.1f× nginx", goalEdgeVsNginx), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x >= goalEdgeVsNginx }))
			case "tls-handshakes":
				r := c.ratio(tAgimo, tNginx, u.rate)
				t.Add(fmt.Sprintf("handshakes/s ≥ %.1f× nginx", goalHandshakesVsNginx), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x >= goalHandshakesVsNginx }))
			case "sse":
				r := c.ratio(tAgimo, tNginx, u.cpuPer)
				t.Add(fmt.Sprintf("proxy CPU per SSE event ≤ %.1f× nginx's", goalCPUvsNginx), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x <= goalCPUvsNginx }))
			case "ws-echo":
				r := c.ratio(tAgimo, tDirect, u.rate)
				t.Add(fmt.Sprintf("WebSocket echo ≥ %.1f× direct", goalWSvsDirect), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x >= goalWSvsDirect }))
				r = c.ratio(tAgimo, tRelay, u.rate)
				t.Add(fmt.Sprintf("WebSocket echo ≥ %.1f× Go copy-loop relay", goalWSvsRelay), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x >= goalWSvsRelay }))
				r = c.ratio(tAgimo, tNginx, u.rate)
				t.Add(fmt.Sprintf("WebSocket echo ≥ %.1f× nginx", goalWSvsNginx), lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x >= goalWSvsNginx }))
				r = c.ratio(tAgimo, tNginx, quantileMS(.99))
				t.Add("WebSocket echo p99 ≤ nginx's", lay.Name, name, r.Format(report.Ratio),
					met(r, func(x float64) bool { return x <= 1 }))
			}
		}
		// Release: judged at the largest N measured (10,000 in a full run).
		var top *releaseGroup
		for _, g := range groupReleases(res.Releases) {
			if g.Layout == lay.Name && (top == nil || g.N > top.N) {
				top = g
			}
		}
		if top != nil {
			last := report.Of(top.fig(func(r *ReleaseRun) float64 {
				if r.Errors > 0 {
					return math.Inf(1) // not all answered: the goal is missed
				}
				return ms(r.Latency.Max())
			}))
			vs := report.Of(top.fig(releaseVsBurst))
			t.Add(fmt.Sprintf("all parked answered ≤ %d ms after the event", goalReleaseMS), lay.Name,
				fmt.Sprintf("%s parked", report.Num(float64(top.N))),
				last.Format(report.Millis)+"; "+vs.Format(report.Ratio)+" the same burst sent straight to the upstream",
				met(last, func(x float64) bool { return x <= goalReleaseMS }))
			t.Add(fmt.Sprintf("release ≤ %.1f× the same burst sent straight to the upstream", goalReleaseVsBurst), lay.Name,
				fmt.Sprintf("%s parked", report.Num(float64(top.N))), vs.Format(report.Ratio),
				met(vs, func(x float64) bool { return x <= goalReleaseVsBurst }))
		}
		// Scale: the largest count against the smallest (the baseline).
		for _, g := range groupScale(res.Scale, reps) {
			if g.Layout != lay.Name || len(g.Counts) < 2 {
				continue
			}
			top := g.Counts[len(g.Counts)-1]
			for _, wild := range []bool{false, true} {
				host := "an exact host"
				if wild {
					host = "a wildcard host"
				}
				r := g.cpuRatio(top, wild)
				t.Add(fmt.Sprintf("CPU per request ≤ %.2f× with %s service(s)", goalScaleCPU, fmtCount(g.base())), lay.Name,
					fmt.Sprintf("%s services, http-small to %s", fmtCount(top), host), r.Format(report.Ratio),
					met(r, func(x float64) bool { return x <= goalScaleCPU }))
			}
		}
	}
	for _, g := range groupCapacity(res.Capacity) {
		if g.Target != tAgimo {
			continue
		}
		per := report.Of(g.fig(func(r *CapacityRun) float64 { return r.PerItem() / 1024 }))
		kib := func(x float64) string { return report.Num(x) + " KiB" }
		switch g.Scenario {
		case "parked-capacity":
			t.Add(fmt.Sprintf("≤ %d KiB per parked request", goalParkedKiB), "–", report.Num(float64(g.N))+" parked",
				per.Format(kib), met(per, func(x float64) bool { return x <= goalParkedKiB }))
		case "parked-at-once":
			t.Add(fmt.Sprintf("≤ %d KiB per parked request, clients arriving at once", goalParkedAtOnceKiB), "–",
				report.Num(float64(g.N))+" parked", per.Format(kib), met(per, func(x float64) bool { return x <= goalParkedAtOnceKiB }))
		case "tunnel-capacity":
			t.Add(fmt.Sprintf("≤ %d KiB per idle tunnel", goalTunnelKiB), "–", report.Num(float64(g.N))+" tunnels",
				per.Format(kib), met(per, func(x float64) bool { return x <= goalTunnelKiB }))
			fds := report.Of(g.fig((*CapacityRun).FDsPerItem))
			t.Add(fmt.Sprintf("≤ %d descriptors per idle tunnel", goalTunnelFDs), "–", report.Num(float64(g.N))+" tunnels",
				fds.Format(report.Num), met(fds, func(x float64) bool { return x <= goalTunnelFDs }))
		}
	}
	return t
}

// latencyPlot draws one panel per throughput figure (a line per target,
// all repetitions merged) and one per release count.
func latencyPlot(res *Results, reps int) []byte {
	var panels []report.Panel
	for _, c := range groupRuns(res.Runs, reps) {
		what := "latency"
		if c.key.Scenario == "sse" {
			what = "time to first event"
		}
		p := report.Panel{Title: fmt.Sprintf("%s · %s · %d conns · %s", c.key.Layout, c.key.Scenario, c.key.Conns, what)}
		for _, tg := range c.targets {
			p.Series = append(p.Series, report.Series{Name: tg, Points: cdfPoints(c.mergedLatency(tg))})
		}
		panels = append(panels, p)
	}
	for _, g := range groupReleases(res.Releases) {
		h := load.NewHist()
		for _, r := range g.Runs {
			h.Merge(r.Latency)
		}
		panels = append(panels, report.Panel{
			Title:  fmt.Sprintf("%s · release · %s parked · event → response", g.Layout, report.Num(float64(g.N))),
			Series: []report.Series{{Name: tAgimo, Points: cdfPoints(h)}},
		})
	}
	return report.SVG("Agimo bench: latency by percentile", panels)
}

func cdfPoints(h *load.Hist) []report.Point {
	var out []report.Point
	for _, p := range h.CDF() {
		out = append(out, report.Point{Fraction: p.Fraction, Millis: ms(p.Value)})
	}
	return slices.Clip(out)
}
