package route

import (
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/agimo/agimo/stats"
)

// TestColdHistory: a route keeps its last cold starts, newest first, with
// the phases reached; one that timed out before readiness is failed.
func TestColdHistory(t *testing.T) {
	r := &Route{Host: "h.test", Timeout: time.Hour, M: stats.NewHost(metrics.NewSet(), "h.test")}
	if last, cur := r.ColdStarts(); last != nil || cur != nil {
		t.Fatalf("new route: %v, %v; want no cold start", last, cur)
	}
	var starts []time.Time
	for i := range coldHistory + 2 {
		cs := r.BeginCold()
		starts = append(starts, cs.Start)
		if i%2 == 0 {
			r.Scaled(cs)
		}
		if _, cur := r.ColdStarts(); cur != cs {
			t.Fatalf("cold start %d not under way", i)
		}
		r.ReadyCold()
		r.FirstByte()
	}
	last, cur := r.ColdStarts()
	if cur != nil || len(last) != coldHistory {
		t.Fatalf("got %d cold starts, %v under way; want %d, none", len(last), cur, coldHistory)
	}
	for i, c := range last {
		want := starts[len(starts)-1-i]
		if !c.Start.Equal(want) || c.Failed || c.Ready <= 0 || c.FirstByte < c.Ready || (c.Scale > 0) != ((len(starts)-1-i)%2 == 0) {
			t.Errorf("cold start %d = %+v; want start %v, ready, then first byte, scaled every other", i, c, want)
		}
	}

	// Past the park timeout without readiness: the next park starts a new
	// cold start, and the old one is recorded as failed.
	r.Timeout = 0
	stale := r.BeginCold()
	fresh := r.BeginCold()
	if fresh == stale {
		t.Fatal("a cold start past the timeout was not replaced")
	}
	last, cur = r.ColdStarts()
	if cur != fresh || !last[0].Start.Equal(stale.Start) || !last[0].Failed || last[0].Ready != 0 {
		t.Errorf("after a timeout: current %v, last %+v; want the fresh one under way and the stale one failed", cur, last[0])
	}
}
