package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/agimo/agimo/conf"
)

func TestScaleServicesConfig(t *testing.T) {
	for _, n := range []int{1, 100, 10000} {
		c := agimoConfig(scaleNamespace(n), scaleServices(n, "127.0.0.1:1234"))
		cfg, err := conf.Parse(strings.NewReader(c))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(cfg.Services) != n {
			t.Fatalf("n=%d: got %d services; want %d", n, len(cfg.Services), n)
		}
		wild := 0
		for _, s := range cfg.Services {
			if strings.HasPrefix(s.Host, "*.") {
				wild++
			}
			if s.Namespace != scaleNamespace(n) || s.TargetAddr() != "127.0.0.1:1234" {
				t.Fatalf("n=%d: service parsed as %+v", n, s)
			}
		}
		if want := n / 2; wild != want {
			t.Errorf("n=%d: got %d wildcard hosts; want %d", n, wild, want)
		}
	}
	svcs := scaleServices(2, "a:1")
	if svcs[0].Host != "s0.bench" || svcs[1].Host != "*.s1.bench" || svcs[1].Service != "s1" {
		t.Errorf("got %+v; want s0.bench exact, *.s1.bench wildcard", svcs)
	}
}

func TestScaleHosts(t *testing.T) {
	for _, tc := range []struct {
		n           int
		exact, wild string
	}{
		{1, "s0.bench", ""},
		{2, "s0.bench", "w.s1.bench"},
		{5, "s4.bench", "w.s3.bench"},
		{100, "s98.bench", "w.s99.bench"},
		{10000, "s9998.bench", "w.s9999.bench"},
	} {
		exact, wild := scaleHosts(tc.n)
		if exact != tc.exact || wild != tc.wild {
			t.Errorf("scaleHosts(%d) = %q, %q; want %q, %q", tc.n, exact, wild, tc.exact, tc.wild)
		}
		// Each must be served by a configured service.
		hosts := map[string]bool{}
		for _, s := range scaleServices(tc.n, "a:1") {
			hosts[s.Host] = true
		}
		if !hosts[exact] {
			t.Errorf("n=%d: exact host %s not configured", tc.n, exact)
		}
		if _, rest, _ := strings.Cut(wild, "."); wild != "" && !hosts["*."+rest] {
			t.Errorf("n=%d: no wildcard configured for %s", tc.n, wild)
		}
	}
}

// fakeScale is two repetitions at 1 and 100 services: CPU per request
// 10 µs with one service; with 100, 10.2 and 11 (exact) and 10.4 and 12
// (wildcard); RSS 20 MiB, then 1 KiB more per service, 2 in rep 1.
func fakeScale() []ScaleRun {
	const mib = 1 << 20
	return []ScaleRun{
		{Layout: "pinned", N: 100, Rep: 0, ReadyS: 0.5, RSS: 20*mib + 99*1024, CPUExact: 10.2, CPUWildcard: 10.4, RateExact: 900},
		{Layout: "pinned", N: 1, Rep: 0, ReadyS: 0.2, RSS: 20 * mib, CPUExact: 10, RateExact: 1000},
		{Layout: "pinned", N: 1, Rep: 1, ReadyS: 0.2, RSS: 20 * mib, CPUExact: 10, RateExact: 1000},
		{Layout: "pinned", N: 100, Rep: 1, ReadyS: 0.7, RSS: 20*mib + 99*2048, CPUExact: 11, CPUWildcard: 12, RateExact: 800},
	}
}

func TestScaleFigures(t *testing.T) {
	gs := groupScale(fakeScale(), 2)
	if len(gs) != 1 {
		t.Fatalf("got %d layouts; want 1", len(gs))
	}
	g := gs[0]
	if g.base() != 1 || len(g.Counts) != 2 || g.Counts[1] != 100 {
		t.Fatalf("got counts %v; want [1 100]", g.Counts)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	for _, tc := range []struct {
		wild          bool
		min, max, med float64
	}{
		{false, 1.02, 1.1, 1.06},
		{true, 1.04, 1.2, 1.12},
	} {
		r := g.cpuRatio(100, tc.wild)
		if r.N != 2 || !near(r.Min, tc.min) || !near(r.Max, tc.max) || !near(r.Median, tc.med) {
			t.Errorf("cpuRatio(100, wildcard %v) = %+v; want %v (%v–%v)", tc.wild, r, tc.med, tc.min, tc.max)
		}
	}
	// The baseline has no wildcard host: no figure, not zero.
	if r := g.cpuRatio(1, true); r.N != 0 {
		t.Errorf("got wildcard ratio at the baseline %+v; want none", r)
	}
	if r := g.rssPerService(100); r.N != 2 || !near(r.Min, 1024) || !near(r.Max, 2048) {
		t.Errorf("rssPerService(100) = %+v; want 1 KiB and 2 KiB", r)
	}
	if r := g.rssPerService(1); r.N != 0 {
		t.Errorf("rssPerService(baseline) = %+v; want none", r)
	}
	// A failed run is missing, not zero.
	runs := fakeScale()
	runs[3].Error = "boom"
	if r := groupScale(runs, 2)[0].cpuRatio(100, false); r.N != 1 || !near(r.Median, 1.02) {
		t.Errorf("with rep 1 failed: %+v; want 1.02 alone", r)
	}
}

// issue13Results adds the new scenarios' figures to fakeResults.
func issue13Results() *Results {
	res := fakeResults()
	res.Scale = fakeScale()
	// The relay did 1,000 round trips where agimo did 950.
	res.Runs = append(res.Runs, fakeRun("pinned", "ws-echo", tRelay, 64, 0, 1000, 1, 0.4))
	res.Capacity = append(res.Capacity, CapacityRun{Scenario: "parked-at-once", Target: tAgimo, N: 1000, Opened: 1000,
		RSSBefore: 10 << 20, RSSAfter: 10<<20 + 1000*10*1024})
	return res
}

func TestIssue13Goals(t *testing.T) {
	md := squeeze(goalsTable(issue13Results(), 3).Markdown())
	for _, want := range []string{
		"| WebSocket echo ≥ 1.0× Go copy-loop relay | pinned | ws-echo, 64 conns | 0.95× | **no**",
		"| WebSocket echo ≥ 1.2× nginx | pinned | ws-echo, 64 conns | – | not measured",
		"| ≤ 6 KiB per parked request, clients arriving at once | – | 1,000 parked | 10 KiB | **no**",
		"| CPU per request ≤ 1.05× with 1 service(s) | pinned | 100 services, http-small to an exact host | 1.06× (1.02×–1.10×) | **no**",
		"| CPU per request ≤ 1.05× with 1 service(s) | pinned | 100 services, http-small to a wildcard host | 1.12× (1.04×–1.20×) | **no**",
	} {
		if !strings.Contains(md, squeeze(want)) {
			t.Errorf("goals table lacks %q:\n%s", want, md)
		}
	}
	// Met when within the goal.
	res := issue13Results()
	for i := range res.Scale {
		res.Scale[i].CPUExact, res.Scale[i].CPUWildcard = 10, 10.3
	}
	if md := squeeze(goalsTable(res, 3).Markdown()); !strings.Contains(md, "exact host | 1.00× | yes") ||
		!strings.Contains(md, "wildcard host | 1.03× | yes") {
		t.Errorf("goals table does not say met:\n%s", md)
	}
}

func TestIssue13Report(t *testing.T) {
	res := issue13Results()
	md := squeeze(renderMarkdown(res, 3))
	for _, want := range []string{
		"`scale` agimo with N configured services",
		"### Scale: cost of configured services",
		"| pinned | 100 | 600ms (500ms–700ms) | 20.1 MiB | 1.5 KiB (1 KiB–2 KiB) | 10.6 µs (10.2 µs–11 µs) | 1.06× (1.02×–1.10×) |",
		"| pinned | 1 | 200ms | 20 MiB | – | 10 µs | 1.00× | – | – | 1,000 |",
		"| ws-echo | 64 | agimo | 950 round trips/s",
		"| ws-echo | 64 | go-relay | 1,000 round trips/s",
	} {
		if !strings.Contains(md, squeeze(want)) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// The JSON holds no NaN (a missing wildcard figure is 0) and renders
	// the same after a round trip (-render).
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("results do not marshal: %v", err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if squeeze(renderMarkdown(&back, 3)) != md {
		t.Error("report differs after a JSON round trip")
	}
}

func TestScenarioCountOverrides(t *testing.T) {
	o := &options{scenarios: []string{"scale", "parked-at-once"}, smoke: true, scaleN: "1,50", atOnceN: "300"}
	sel, err := selectScenarios(o)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int{}
	for _, s := range sel {
		got[s.name] = s.counts
	}
	if c := got["scale"]; len(c) != 2 || c[0] != 1 || c[1] != 50 {
		t.Errorf("scale counts %v; want [1 50]", c)
	}
	if c := got["parked-at-once"]; len(c) != 1 || c[0] != 300 {
		t.Errorf("parked-at-once counts %v; want [300]", c)
	}
	o = &options{scenarios: []string{"all"}, smoke: true}
	sel, _ = selectScenarios(o)
	for _, s := range sel {
		if s.name == "scale" && (len(s.counts) != 2 || s.counts[1] != 100) {
			t.Errorf("smoke scale counts %v; want [1 100]", s.counts)
		}
	}
}
