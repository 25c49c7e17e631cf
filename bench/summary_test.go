package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/agimo/agimo/bench/load"
)

// fakeRun is a throughput run with ops/s rate, p99 about p99ms, and
// proxy CPU seconds cpu over one measured second.
func fakeRun(layout, sc, target string, conns, rep int, rate float64, p99ms float64, cpu float64) ThroughputRun {
	h := load.NewHist()
	// 100 samples: 98 fast, 2 at the p99 value, so q=.99 lands on it.
	for i := range 100 {
		d := time.Duration(p99ms * 1e6 / 4)
		if i >= 98 {
			d = time.Duration(p99ms * 1e6)
		}
		h.Record(d)
	}
	return ThroughputRun{Layout: layout, Scenario: sc, Target: target, Conns: conns, Rep: rep,
		Result: &load.Result{Ops: int64(rate), Seconds: 1, Latency: h}, ProxyCPU: cpu, WindowS: 1}
}

func fakeResults() *Results {
	res := &Results{Layouts: []layout{layouts["pinned"]}, Settings: Settings{Reps: 3}}
	// Agimo 1.5, 1.3 and 1.0 × nginx in the three repetitions; direct
	// twice nginx.
	for rep, agimo := range []float64{1500, 1300, 1000} {
		res.Runs = append(res.Runs,
			fakeRun("pinned", "http-small", tDirect, 64, rep, 2000, 1, 0),
			fakeRun("pinned", "http-small", tAgimo, 64, rep, agimo, 2, 0.5),
			fakeRun("pinned", "http-small", tNginx, 64, rep, 1000, 4, 0.25))
	}
	res.Runs = append(res.Runs,
		fakeRun("pinned", "ws-echo", tDirect, 64, 0, 1000, 1, 0),
		fakeRun("pinned", "ws-echo", tAgimo, 64, 0, 950, 1, 0.5))
	failed := fakeRun("pinned", "ws-echo", tNginx, 64, 0, 1, 1, 0)
	failed.Error = "boom"
	res.Runs = append(res.Runs, failed)
	rel := load.NewHist()
	rel.Record(20 * time.Millisecond)
	rel.Record(150 * time.Millisecond)
	res.Releases = []ReleaseRun{{Layout: "pinned", N: 10000, Answered: 2, Latency: rel, APICallMS: 3, BurstDirectMS: 100, BurstAgimoMS: 120}}
	res.Capacity = []CapacityRun{
		{Scenario: "parked-capacity", Target: tAgimo, N: 1000, Opened: 1000, RSSBefore: 10 << 20, RSSAfter: 10<<20 + 1000*6*1024,
			GoroutinesBefore: 10, GoroutinesAfter: 2010},
		{Scenario: "tunnel-capacity", Target: tAgimo, N: 1000, Opened: 1000, RSSBefore: 0, RSSAfter: 1000 * 40 * 1024, FDsBefore: 10, FDsAfter: 10 + 1000*2},
	}
	return res
}

func TestRatiosArePairedPerRepetition(t *testing.T) {
	cells := groupRuns(fakeResults().Runs, 3)
	if len(cells) != 2 {
		t.Fatalf("%d cells, want 2", len(cells))
	}
	c := cells[0]
	if strings.Join(c.targets, ",") != "direct,agimo,nginx" {
		t.Errorf("targets %v", c.targets)
	}
	u := unitOf("http-small")
	r := c.ratio(tAgimo, tNginx, u.rate)
	if r.Median != 1.3 || r.Min != 1 || r.Max != 1.5 || r.N != 3 {
		t.Errorf("agimo/nginx %+v, want 1.3 (1–1.5)", r)
	}
	if r := c.ratio(tAgimo, tNginx, quantileMS(.99)); math.Abs(r.Median-0.5) > 0.01 {
		t.Errorf("p99 ratio %v, want 0.5", r.Median)
	}
	// CPU per request: 0.5 s / 1500 req vs 0.25 s / 1000 req in rep 0.
	if r := c.ratio(tAgimo, tNginx, u.cpuPer); math.Abs(r.Max-2) > 1e-9 {
		t.Errorf("CPU ratio max %v, want 2 (rep 2: 500µs vs 250µs)", r.Max)
	}
	// A failed run counts as missing, not as zero.
	if r := cells[1].ratio(tAgimo, tNginx, unitOf("ws-echo").rate); r.N != 0 {
		t.Errorf("ratio against a failed run: %+v", r)
	}
}

// squeeze collapses runs of spaces, so expectations do not depend on
// column padding.
func squeeze(s string) string {
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return s
}

func TestGoalsTable(t *testing.T) {
	md := squeeze(goalsTable(fakeResults(), 3).Markdown())
	for _, want := range []string{
		"| throughput ≥ 1.1× nginx      | pinned | http-small, 64 conns | 1.30× (1.00×–1.50×) | yes",
		"| proxy CPU per request ≤ 1.0× nginx's | pinned | http-small, 64 conns | 1.54× (1.33×–2.00×) | **no**",
		"| release ≤ 1.5× the same burst sent straight to the upstream | pinned | 10,000 parked | 1.50× | yes",
		"| throughput ≥ 0.6× direct     | pinned | http-small, 64 conns | 0.65× (0.50×–0.75×) | yes",
		"| WebSocket echo ≥ 0.9× direct | pinned | ws-echo, 64 conns    |               0.95× | yes",
		"10,000 parked",
		"150ms; 1.50× the same burst sent straight to the upstream | **no**",
		"| ≤ 8 KiB per parked request",
		"6 KiB | yes",
		"40 KiB | **no**",
		"| ≤ 3 descriptors per idle tunnel | – | 1,000 tunnels | 2 | yes",
	} {
		if !strings.Contains(md, squeeze(want)) {
			t.Errorf("goals table lacks %q:\n%s", want, md)
		}
	}
}

func TestMarkdownReport(t *testing.T) {
	res := fakeResults()
	res.Notes = []string{"a note"}
	res.Failures = []ScenarioFailed{{Layout: "pinned", Scenario: "ws-echo", Error: "line one\nline two"}}
	md := squeeze(renderMarkdown(res, 3))
	for _, want := range []string{
		"### Throughput and latency, layout `pinned`",
		"| http-small |    64 | agimo  | 1,300 req/s (1,000–1,500) |",
		"385 µs/req", // the median of 333, 385 and 500
		"### Release",
		"### Capacity",
		"| parked-capacity | agimo  | 1,000 | 10 → 15.9 MiB |            6 KiB |                   2 |",
		"### Goals",
		"### Notes\n\n- a note",
		"- pinned / ws-echo: line one line two",
	} {
		if !strings.Contains(md, squeeze(want)) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestResultsMarshalWithFailures(t *testing.T) {
	res := fakeResults()
	res.Runs = append(res.Runs, ThroughputRun{Layout: "pinned", Scenario: "sse", Target: tAgimo, Error: "no phase marks"})
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("results do not marshal: %v", err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if squeeze(renderMarkdown(&back, 3)) != squeeze(renderMarkdown(res, 3)) {
		t.Error("report differs after a JSON round trip (-render)")
	}
}

func TestLatencyPlotWellFormed(t *testing.T) {
	b := latencyPlot(fakeResults(), 3)
	d := xml.NewDecoder(bytes.NewReader(b))
	panels := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "g" {
			panels++
		}
	}
	if panels != 3 { // http-small, ws-echo, release
		t.Errorf("%d panels, want 3", panels)
	}
}
