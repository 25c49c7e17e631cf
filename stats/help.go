package stats

import (
	"bytes"
	"io"
)

// VictoriaMetrics/metrics writes "# HELP name" with no text (it has no API
// for one), and Prometheus's linter (promtool check metrics) wants a help
// text per family. So the exposition is written to a buffer and each
// agimo_* family's HELP line gets its text here: one table, read once per
// scrape, never on the request path.
var metricHelp = map[string]string{
	"agimo_requests_total":                           "Requests that matched a host, counted when they arrive (parked ones included, probes not).",
	"agimo_active_requests":                          "Requests of a host now parked, in flight or tunnelled: the figure KEDA scales on.",
	"agimo_parked_requests":                          "Requests of a host now waiting for a ready endpoint.",
	"agimo_park_timeouts_total":                      "Requests answered 503 because their service was not ready within the timeout.",
	"agimo_park_rejected_total":                      "Requests answered 503 at once because max_parked requests were already waiting.",
	"agimo_probe_requests_total":                     "Health-check requests (probe_paths, probe_user_agents), not counted as activity.",
	"agimo_wakeups_total":                            "Workloads scaled up from zero by Agimo (wake = true).",
	"agimo_wakeup_errors_total":                      "Failed attempts to scale a workload up from zero.",
	"agimo_upstream_errors_total":                    "Failed exchanges with an upstream, by kind.",
	"agimo_client_errors_total":                      "Requests that failed on the client's side (upload abandoned or stalled, response not read), by kind.",
	"agimo_park_duration_seconds":                    "Time from a request being parked to its release.",
	"agimo_cold_start_seconds":                       "Time from the first request parked on a cold service to each phase of its cold start.",
	"agimo_open_connections":                         "Client connections now open, however held (served, parked, tunnelled): what max_connections bounds.",
	"agimo_open_tunnels":                             "WebSocket tunnels now open.",
	"agimo_tunnel_bytes_total":                       "Bytes relayed through WebSocket tunnels, by direction.",
	"agimo_watch_errors_total":                       "Failed lists and watches of the Kubernetes API, by resource.",
	"agimo_watch_last_event_age_seconds":             "Seconds since the readiness watch last received an event (-1 before the first).",
	"agimo_watch_synced":                             "1 once every informer has completed its first list.",
	"agimo_config_reloads_total":                     "Config reloads, by result.",
	"agimo_config_last_reload_successful":            "1 if the last config reload was applied, 0 if it was rejected.",
	"agimo_edge_connections_total":                   "Client connections sorted by protocol (h1, h2c, h2, passthrough) and handed to their front end.",
	"agimo_edge_unsorted_total":                      "Client connections closed before they reached a front end, TLS handshake failures aside, by reason.",
	"agimo_tls_handshake_errors_total":               "TLS handshakes that failed on the TLS port, by reason (timeout, eof, not_tls, shutdown, a TLS alert's name, other).",
	"agimo_tls_certificate_errors_total":             "TLS certificates that could not be used (Secret missing, deleted, of another type or malformed; key not matching the certificate; file unreadable), by source; the source's previous certificate keeps serving.",
	"agimo_tls_certificate_expiry_timestamp_seconds": "NotAfter of the certificate each TLS source serves, as a Unix timestamp.",
	"agimo_access_log_dropped_total":                 "Access log lines dropped, by reason: full (the writer fell behind and its buffer was full) or write_error (the destination failed).",
	"agimo_tracing_export_errors_total":              "Batches of trace spans the OTLP exporter failed to send (collector unreachable, refusing or slow); their spans are dropped.",
	"agimo_h2_protocol_errors_total":                 "HTTP/2 connection and stream errors the server detected, by type (x/net/http2's names, e.g. too_many_early_resets).",
}

// WriteWithHelp copies an exposition from src to w, giving each HELP line
// of a family in metricHelp its text.
func WriteWithHelp(w io.Writer, src []byte) {
	help := []byte("# HELP ")
	var out bytes.Buffer
	out.Grow(len(src) + 1024)
	for len(src) > 0 {
		line, rest, _ := bytes.Cut(src, []byte{'\n'})
		src = rest
		if name, ok := bytes.CutPrefix(line, help); ok && bytes.IndexByte(name, ' ') < 0 {
			if text, ok := metricHelp[string(name)]; ok {
				line = append(append(append([]byte(nil), line...), ' '), text...)
			}
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	w.Write(out.Bytes())
}
