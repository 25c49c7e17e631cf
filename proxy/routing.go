package proxy

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/watch"
)

// lookup finds the route for a request by the host it is for
// (route.Authority) and its raw path (route.Path). It returns status 400
// for a missing or invalid host and 404 when no service claims the host
// and path (issue 2, issue 12). It changes nothing in the request:
// normalizeRequest makes Host agree before it goes upstream.
func (p *Proxy) lookup(ctx *fasthttp.RequestCtx) (*route.Route, int) {
	h := &ctx.Request.Header
	uri := h.RequestURI()
	host, ok := route.Authority(uri, h.Host())
	if !ok {
		return nil, fasthttp.StatusBadRequest
	}
	return p.core.Routes().Lookup(host, route.Path(uri))
}

// isProbe reports whether the request is a health check r's config names.
func isProbe(ctx *fasthttp.RequestCtx, r *route.Route) bool {
	h := &ctx.Request.Header
	return r.HasProbes() && r.IsProbe(route.Path(h.RequestURI()), h.UserAgent())
}

// wantsWaitingPage reports whether a cold request should get r's waiting
// page (route.Route.WantsWaitingPage).
func wantsWaitingPage(ctx *fasthttp.RequestCtx, r *route.Route) bool {
	h := &ctx.Request.Header
	return r.WantsWaitingPage(h.IsGet(), h.Peek(fasthttp.HeaderAccept), isUpgrade(h))
}

// normalizeRequest makes a routed request agree with the host it was
// routed by: for an absolute-form target, the Host sent upstream becomes
// the target's authority (RFC 9112 §3.2.2) and the scheme http, as the
// upstream hop is plain HTTP whatever scheme the client named. It runs in
// prepareRequest, so every request that goes upstream passes here: one
// forwarded at once, one that parked on its goroutine, and one replayed
// from the lot, whose head is the client's as received (issue 10).
func normalizeRequest(req *fasthttp.Request) {
	if !route.IsAbsoluteForm(req.Header.RequestURI()) {
		return
	}
	u := req.URI()
	req.Header.SetHostBytes(u.Host())
	u.SetScheme("http")
}

// park waits on the request's goroutine until r's service is ready
// (park.Waiter), watching the client's socket for it leaving: fasthttp
// cannot tell a handler that its client left (park.WatchClose).
func (p *Proxy) park(ctx *fasthttp.RequestCtx, r *route.Route, deadline time.Time) (*watch.State, error) {
	gone, stop := park.WatchClose(ctx.Conn())
	defer stop()
	start := time.Now()
	x := exchangeOf(ctx)
	st, err := p.core.Waiter.Wait(r, deadline, gone, x.tr)
	end := time.Now()
	x.parkedFor(end.Sub(start))
	x.tr.Park(start, end, err)
	return st, err
}
