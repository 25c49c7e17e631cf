package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agimo/agimo/stats"
)

// The metrics listener's output parses with Prometheus's own text parser,
// with the types Prometheus and KEDA expect, on both /metrics and / (the
// original chart scrapes /), and the park histogram is one that
// histogram_quantile can read: cumulative "le" buckets ending in +Inf,
// whose last bucket equals the count.
func TestMetricsExposition(t *testing.T) {
	h := startHarness(t, oneService)
	parkAndRelease(t, h)
	h.get("app.test", "/")

	admin := httptest.NewServer(stats.AdminHandler(h.set, func() bool { return true }))
	defer admin.Close()
	for _, path := range []string{"/metrics", "/"} {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
		if err != nil {
			t.Fatalf("%s: Prometheus text parser: %v\n%s", path, err, body)
		}
		for name, want := range map[string]dto.MetricType{
			"agimo_requests_total":        dto.MetricType_COUNTER,
			"agimo_active_requests":       dto.MetricType_GAUGE,
			"agimo_parked_requests":       dto.MetricType_GAUGE,
			"agimo_park_duration_seconds": dto.MetricType_HISTOGRAM,
			"agimo_upstream_errors_total": dto.MetricType_COUNTER,
			"agimo_client_errors_total":   dto.MetricType_COUNTER,
		} {
			f, ok := fams[name]
			if !ok {
				t.Errorf("%s: no family %s", path, name)
				continue
			}
			if f.GetType() != want {
				t.Errorf("%s: %s type = %v; want %v", path, name, f.GetType(), want)
			}
		}
		req := fams["agimo_requests_total"].GetMetric()
		if len(req) != 1 || req[0].GetCounter().GetValue() != 2 || req[0].GetLabel()[0].GetValue() != "app.test" {
			t.Errorf("agimo_requests_total = %v; want one series host=app.test value 2", req)
		}
		hist := fams["agimo_park_duration_seconds"].GetMetric()[0].GetHistogram()
		if hist.GetSampleCount() != 1 {
			t.Errorf("park histogram count = %d; want 1", hist.GetSampleCount())
		}
		var prev uint64
		for _, b := range hist.GetBucket() {
			if b.GetCumulativeCount() < prev {
				t.Errorf("bucket le=%v count %d < previous %d: not cumulative", b.GetUpperBound(), b.GetCumulativeCount(), prev)
			}
			prev = b.GetCumulativeCount()
		}
		if prev != 1 {
			t.Errorf("last finite bucket = %d; want 1 (a sub-minute park)", prev)
		}
	}
}

// Every agimo_* family passes Prometheus's own linter (issue 10): a HELP
// text and a TYPE for each, counters ending in _total, histograms with
// their buckets. promtool comes from Debian's prometheus package (.ci/run
// installs it); without it the test fails, it does not skip.
func TestMetricsPromtoolClean(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install prometheus): %v", err)
	}
	h := startHarness(t, oneService)
	parkAndRelease(t, h)
	admin := httptest.NewServer(stats.AdminHandler(h.set, func() bool { return true }))
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Only Agimo's own families: the Go runtime's come from the library.
	var ours strings.Builder
	families := 0
	for _, line := range strings.SplitAfter(string(body), "\n") {
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		if strings.HasPrefix(name, "agimo_") {
			ours.WriteString(line)
			if strings.HasPrefix(line, "# TYPE ") {
				families++
			}
		}
	}
	if families < 10 {
		t.Fatalf("got %d agimo_* families; want at least 10:\n%s", families, ours.String())
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(ours.String())
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s\non:\n%s", err, out, ours.String())
	}
}

// parkAndRelease parks one request to app.test and releases it by making
// the service ready, so the park and cold-start series have a sample.
func parkAndRelease(t *testing.T, h *harness) {
	t.Helper()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	done := make(chan error, 1)
	go func() { _, _, err := h.get("app.test", "/"); done <- err }()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", true, up.addr())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
