package stats

import (
	"bytes"
	"io"
	"net/http"

	"github.com/VictoriaMetrics/metrics"
)

func init() {
	// Write "# HELP"/"# TYPE" lines so Prometheus knows counters from
	// gauges.
	metrics.ExposeMetadata(true)
}

// AdminHandler serves the metrics listener: /metrics and / (the original
// Helm chart's scrape annotations point at /), /healthz (the process is
// alive) and /readyz (ready() is true: synced and not draining).
func AdminHandler(set *metrics.Set, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	writeMetrics := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		var b bytes.Buffer
		set.WritePrometheus(&b)
		metrics.WriteProcessMetrics(&b)
		WriteWithHelp(w, b.Bytes())
	}
	mux.HandleFunc("GET /metrics", writeMetrics)
	mux.HandleFunc("GET /{$}", writeMetrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}
