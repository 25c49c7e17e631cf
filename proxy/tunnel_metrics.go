package proxy

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// tunnelSeries are one host's tunnel series (issue 3), created on the
// host's first tunnel. agimo_active_requests counts open tunnels too.
type tunnelSeries struct {
	open     *metrics.Gauge   // agimo_open_tunnels: WebSocket tunnels now open
	up, down *metrics.Counter // agimo_tunnel_bytes_total: client to upstream, upstream to client
}

func (p *Proxy) tunnelMetrics(host string) tunnelSeries {
	l := fmt.Sprintf("host=%q", host)
	return tunnelSeries{
		open: p.metrics.GetOrCreateGauge("agimo_open_tunnels{"+l+"}", nil),
		up:   p.metrics.GetOrCreateCounter("agimo_tunnel_bytes_total{" + l + `,direction="up"}`),
		down: p.metrics.GetOrCreateCounter("agimo_tunnel_bytes_total{" + l + `,direction="down"}`),
	}
}
