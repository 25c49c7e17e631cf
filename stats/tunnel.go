package stats

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// Tunnel is one host's tunnel series (issue 3), created on the
// host's first tunnel. agimo_active_requests counts open tunnels too.
type Tunnel struct {
	Open     *metrics.Gauge   // agimo_open_tunnels: WebSocket tunnels now open
	Up, Down *metrics.Counter // agimo_tunnel_bytes_total: client to upstream, upstream to client
}

// NewTunnel returns host's tunnel series.
func NewTunnel(set *metrics.Set, host string) Tunnel {
	l := fmt.Sprintf("host=%q", host)
	return Tunnel{
		Open: set.GetOrCreateGauge("agimo_open_tunnels{"+l+"}", nil),
		Up:   set.GetOrCreateCounter("agimo_tunnel_bytes_total{" + l + `,direction="up"}`),
		Down: set.GetOrCreateCounter("agimo_tunnel_bytes_total{" + l + `,direction="down"}`),
	}
}

// OpenTunnels returns each host's agimo_open_tunnels in set, for the
// status page, without creating the series of hosts that never had one.
func OpenTunnels(set *metrics.Set) map[string]int64 {
	const prefix = "agimo_open_tunnels{host="
	out := make(map[string]int64)
	for _, name := range set.ListMetricNames() {
		q, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		host, err := strconv.Unquote(strings.TrimSuffix(q, "}"))
		if err != nil {
			continue
		}
		out[host] = int64(set.GetOrCreateGauge(name, nil).Get())
	}
	return out
}
