package proxy

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/route"
)

// Answers for cold services beyond parking (issue 7): the waiting page for
// browsers, a Retry-After learned from the service's cold starts, and
// health checks answered without waking the service (package route says
// which requests these are).

// serveWaitingPage answers 503 with the page. 503 keeps caches and
// crawlers from taking the page for the app; browsers show it all the same.
func (p *Proxy) serveWaitingPage(ctx *fasthttp.RequestCtx, r *route.Route) {
	page, err := r.WaitingPage()
	if err != nil {
		p.log.Warn().Err(err).Str("host", r.Host).Msg("waiting page template failed")
		p.coldRetry(ctx, r, "service "+r.Host+" is starting")
		return
	}
	if !bodyConsumed(ctx) {
		ctx.SetConnectionClose()
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(route.WaitingRefresh))
	ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.SetBody(page)
}

// coldRetry answers 503 with a Retry-After learned from r's cold starts.
func (p *Proxy) coldRetry(ctx *fasthttp.RequestCtx, r *route.Route, msg string) {
	p.answer503(ctx, r.RetryAfter(p.opts.RetryAfter), msg)
}

// serveProbe answers a health checker's request without counting it as
// activity: forwarded if the service is up, answered here if it is cold,
// so that probes neither wake a service nor keep it awake (issue 7).
func (p *Proxy) serveProbe(ctx *fasthttp.RequestCtx, r *route.Route) {
	r.M.Probes.Inc()
	st := r.Ready.State()
	if !st.Ready {
		setReason(ctx, reasonProbe)
		if !bodyConsumed(ctx) {
			ctx.SetConnectionClose()
		}
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.Response.SetBodyString("ok: " + r.Host + " is scaled to zero; Agimo answered for it\n")
		return
	}
	p.forward(ctx, r, st, time.Now().Add(r.Timeout), false)
}
