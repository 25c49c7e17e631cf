package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "1234 (we ird) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3 {
		t.Errorf("cpu = %v, %v; want 3s (250+50 ticks)", got, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("short stat accepted")
	}
	self, err := cpuSeconds(os.Getpid())
	if err != nil || self < 0 {
		t.Errorf("own cpu time %v, %v", self, err)
	}
	if rss, err := rssBytes(os.Getpid()); err != nil || rss < 1<<20 {
		t.Errorf("own rss %v, %v", rss, err)
	}
}

func TestParseMachineBusy(t *testing.T) {
	got, err := parseMachineBusy([]byte("cpu  100 5 50 1000 20 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil || got != 1.7 { // 100+5+50+3+2+10 ticks
		t.Errorf("busy = %v, %v; want 1.7s", got, err)
	}
	if _, err := parseMachineBusy([]byte("intr 1 2 3\n")); err == nil {
		t.Error("malformed /proc/stat accepted")
	}
	if _, err := machineBusy(); err != nil {
		t.Error(err)
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP agimo_parked_requests x
# TYPE agimo_parked_requests gauge
agimo_parked_requests{host="cold.bench"} 42
go_goroutines 17
process_resident_memory_bytes 1.5e+07
bad line
`))
	if err != nil {
		t.Fatal(err)
	}
	if m[`agimo_parked_requests{host="cold.bench"}`] != 42 || m["go_goroutines"] != 17 || m["process_resident_memory_bytes"] != 1.5e7 {
		t.Errorf("parsed %v", m)
	}
	if parkedSeries != `agimo_parked_requests{host="cold.bench"}` {
		t.Errorf("parked series %q", parkedSeries)
	}
}

func TestFitCount(t *testing.T) {
	for _, c := range []struct {
		n, per int
		limit  uint64
		want   int
	}{
		{10000, 1, 20000, 10000},
		{50000, 1, 20000, 19000},
		{10000, 2, 20000, 9000},
		{10000, 6, 20000, 3000},
		{50000, 1, 1 << 20, 50000},
		{5000, 2, 1500, 500},
	} {
		if got := fitCount(c.n, c.per, c.limit); got != c.want {
			t.Errorf("fitCount(%d, %d, %d) = %d, want %d", c.n, c.per, c.limit, got, c.want)
		}
	}
}

func TestSelectScenarios(t *testing.T) {
	all, err := selectScenarios(&options{scenarios: []string{"all"}})
	if err != nil || len(all) != len(scenarios) {
		t.Fatalf("all: %d scenarios, %v", len(all), err)
	}
	sel, err := selectScenarios(&options{scenarios: []string{"release", "http-small"}, smoke: true, relN: "5,6"})
	if err != nil {
		t.Fatal(err)
	}
	// The suite's order, not the command line's; smoke counts; override.
	if len(sel) != 2 || sel[0].name != "http-small" || sel[0].conns[0] != 8 || sel[1].counts[1] != 6 {
		t.Errorf("selected %+v %+v", sel[0], sel[1])
	}
	if scenarios[0].conns[0] != 64 {
		t.Error("smoke settings leaked into the shared table")
	}
	if _, err := selectScenarios(&options{scenarios: []string{"nope"}}); err == nil {
		t.Error("unknown scenario accepted")
	}
	if _, err := selectScenarios(&options{scenarios: []string{"release"}, relN: "1,x"}); err == nil {
		t.Error("bad count accepted")
	}
}

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"-reps", "5", "http-small", "-smoke", "release"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.reps != 5 || !o.smoke || strings.Join(o.scenarios, ",") != "http-small,release" {
		t.Errorf("parsed %+v", o)
	}
	o, err = parseArgs([]string{"-target", "http://127.0.0.1:1/", "-c", "3", "-d", "2s"}, io.Discard)
	if err != nil || o.conns != 3 || o.dur != 2*time.Second {
		t.Errorf("load flags: %+v, %v", o, err)
	}
	if _, err := parseArgs([]string{"-target", "http://x/", "all"}, io.Discard); err == nil {
		t.Error("-target with scenarios accepted")
	}
	if _, err := parseArgs(nil, io.Discard); err == nil {
		t.Error("no arguments accepted")
	}
	l, err := selectLayouts(&options{smoke: true})
	if err != nil || len(l) != 1 || l[0].Name != "pinned" {
		t.Errorf("smoke layouts %v, %v", l, err)
	}
	if _, err := selectLayouts(&options{layouts: "pinned,sideways"}); err == nil {
		t.Error("unknown layout accepted")
	}
}

func TestSrcPoolRotates(t *testing.T) {
	p := newSrcPool(2)
	var got []string
	for range 5 {
		got = append(got, p.get().String())
	}
	if strings.Join(got, " ") != "127.0.0.2 127.0.0.2 127.0.0.3 127.0.0.3 127.0.0.4" {
		t.Errorf("addresses %v", got)
	}
	p = &srcPool{next: 254, used: 1, perIP: 1}
	if ip := p.get().String(); ip != "127.0.0.2" {
		t.Errorf("after .254: %s, want wrap to .2", ip)
	}
}

func TestCPUList(t *testing.T) {
	if got := cpuList("0,1"); len(got) != 2 || got[1] != 1 {
		t.Errorf("cpuList = %v", got)
	}
	if cpuList("") != nil {
		t.Error("empty list not nil")
	}
}
