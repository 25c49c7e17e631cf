package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// accessLogResults adds the access-log scenario's runs to fakeResults:
// agimo-log at 1,000 req/s for 0.55 s of CPU where agimo did 1,100 req/s
// for 0.5 s (0.55 ms vs 0.4545 ms per request: 1.21×).
func accessLogResults() *Results {
	res := fakeResults()
	for rep := range 3 {
		res.Runs = append(res.Runs,
			fakeRun("pinned", "access-log", tAgimo, 64, rep, 1100, 1, 0.5),
			fakeRun("pinned", "access-log", tAgimoLog, 64, rep, 1000, 1, 0.55))
	}
	return res
}

func TestAccessLogGoalAndTable(t *testing.T) {
	cases := []struct {
		name   string
		logCPU float64
		want   string
	}{
		{"missed", 0.55, "| access log on: CPU per request ≤ 1.10× off | pinned | access-log, 64 conns | 1.21×; throughput 0.91× | **no**"},
		{"met", 0.5, "| access log on: CPU per request ≤ 1.10× off | pinned | access-log, 64 conns | 1.10×; throughput 0.91× | yes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := accessLogResults()
			for i := range res.Runs {
				if res.Runs[i].Target == tAgimoLog {
					res.Runs[i].ProxyCPU = tc.logCPU
				}
			}
			if md := squeeze(goalsTable(res, 3).Markdown()); !strings.Contains(md, squeeze(tc.want)) {
				t.Errorf("goals table lacks %q:\n%s", tc.want, md)
			}
		})
	}
	md := squeeze(renderMarkdown(accessLogResults(), 3))
	for _, want := range []string{
		"#### Access log on vs off, layout `pinned`",
		"| access-log | 64 | 455 µs | 550 µs | 1.21× | 1,100 req/s | 1,000 req/s | 0.91× |",
		"| access-log | 64 | agimo-log | 1,000 req/s",
	} {
		if !strings.Contains(md, squeeze(want)) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// The ratio table (agimo against nginx, direct, the relay) leaves
	// the access-log cell out.
	if strings.Contains(squeeze(ratioTable(groupRuns(accessLogResults().Runs, 3)).Markdown()), "| access-log |") {
		t.Error("ratio table has an access-log row")
	}
}

func TestAccessLogScenarioTargets(t *testing.T) {
	sel, err := selectScenarios(&options{scenarios: []string{"access-log"}, smoke: true})
	if err != nil || len(sel) != 1 || !sel[0].accessLog || len(sel[0].conns) != 1 || sel[0].conns[0] != 8 {
		t.Fatalf("selectScenarios: %+v, %v; want access-log at 8 conns", sel, err)
	}
	if needsNginx(sel) {
		t.Error("needsNginx(access-log) = true; want false: its targets are two agimos")
	}
	e := &env{agimo: &agimoProc{addr: "127.0.0.1:1"}, agimoLog: &agimoProc{addr: "127.0.0.1:2"}}
	ts := e.targets(sel[0])
	if len(ts) != 2 || ts[0].name != tAgimo || ts[0].addr != "127.0.0.1:1" || ts[1].name != tAgimoLog || ts[1].addr != "127.0.0.1:2" {
		t.Errorf("targets %+v; want agimo then agimo-log", ts)
	}
}

func TestCountLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	body := strings.Repeat(`{"status":200}`+"\n", 100000) + "tail"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	lines, size, err := countLines(p)
	if err != nil || lines != 100000 || size != int64(len(body)) {
		t.Errorf("countLines = %d, %d, %v; want 100000, %d, nil", lines, size, err, len(body))
	}
}
