package status

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agimo/agimo/scale"
)

// TestPageEveryField: the page renders a view with every optional field
// set (each branch of the template), and shows them.
func TestPageEveryField(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := now.Add(-90 * time.Second)
	f := func(v float64) *float64 { return &v }
	v := &View{Time: now, LastReload: &ReloadView{Time: at, Result: "ok"}, Routes: []RouteView{{
		Host: "a.test", Paths: []string{"/"}, ExactPaths: []string{"/x"}, Source: "HTTPRoute apps/r",
		Service: "apps/a:80", Workload: "deployment apps/a", State: "starting", Target: "10.0.0.1:80",
		Parked: 3, Active: 4, OpenTunnels: 1,
		ColdStart:  &ColdView{Start: at, Scale: f(0.5), Ready: f(1.5)},
		ColdStarts: []ColdView{{Start: at, Scale: f(0.25), Ready: f(2), FirstByte: f(2.5)}, {Start: at, Failed: true}},
		Scaling: ScaleView{Wake: true, LastWake: &at, WakeError: "forbidden", IdleAfter: 600, IdleSince: &at,
			ScaleDownIn: f(510), LastScaleDown: &at},
	}}}
	var b strings.Builder
	if err := page.Execute(&b, v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"last reload 1m30s ago", `id="reload-result">ok<`, "=/x", "HTTPRoute apps/r",
		"(fixed)", "wake on request; last wake 1m30s ago", "wake failed: forbidden", "idle after 10m0s",
		"scale-down in 8m30s", "last idle scale-down 1m30s ago", "under way</b>, since 1m30s ago; scaled 0.500 s; ready 1.500 s",
		"scaled 0.250 s, ready 2.000 s, first byte 2.500 s", `<span class="error">failed</span>`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("page lacks %q:\n%s", want, b.String())
		}
	}
}

// TestScaleDownCountdown: the idle countdown runs from the last activity
// seen, stops at 0, and is unknown without one.
func TestScaleDownCountdown(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name      string
		idleAfter time.Duration
		since     time.Time
		want      string
	}{
		{"counting", 10 * time.Minute, now.Add(-4 * time.Minute), "360"},
		{"due", time.Minute, now.Add(-2 * time.Minute), "0"},
		{"no activity seen", time.Minute, time.Time{}, "unknown"},
		{"no idle_after", 0, now, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := scaleView(false, tc.idleAfter, scale.WorkloadState{IdleSince: tc.since}, now)
			got := "unknown"
			if v.ScaleDownIn != nil {
				got = fmt.Sprintf("%.0f", *v.ScaleDownIn)
			}
			if got != tc.want {
				t.Errorf("idle_scale_down_in_seconds = %s; want %s", got, tc.want)
			}
		})
	}
}
