package proxy

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/watch"
)

// isUpgrade reports whether the request asks for a WebSocket upgrade.
// Placeholder until issue 3 lands: nothing is tunnelled yet, and upgrade
// headers are stripped as hop-by-hop, so the request is forwarded plainly.
func isUpgrade(h *fasthttp.RequestHeader) bool { return false }

// upgrade tunnels a WebSocket connection (issue 3).
func (p *Proxy) upgrade(ctx *fasthttp.RequestCtx, r *route, st *watch.State, deadline time.Time) bool {
	return p.forward(ctx, r, st, deadline)
}
