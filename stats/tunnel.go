package stats

import (
	"fmt"

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
