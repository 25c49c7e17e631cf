package proxy

import (
	"bytes"
	"html/template"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Features for cold services beyond parking (issue 7): health-check
// requests that must not wake a service, a waiting page for browsers, and
// a Retry-After learned from the service's own cold starts.

// isProbe reports whether the request comes from a health checker that
// the service's config names, by path or by user agent substring.
func (r *route) isProbe(ctx *fasthttp.RequestCtx) bool {
	if len(r.svc.ProbePaths) == 0 && len(r.svc.ProbeUserAgents) == 0 {
		return false
	}
	// Compared with the path as it goes upstream, byte for byte: a
	// decoded or normalised path would let "/%68ealthz" or
	// "/x/../healthz" pass as the probe, uncounted, while the app serves
	// whatever those bytes name to it (issue 10).
	path := requestPath(ctx.Request.Header.RequestURI())
	for _, p := range r.svc.ProbePaths {
		if string(path) == p {
			return true
		}
	}
	ua := ctx.Request.Header.UserAgent()
	for _, s := range r.svc.ProbeUserAgents {
		if s != "" && bytes.Contains(ua, []byte(s)) {
			return true
		}
	}
	return false
}

// wantsWaitingPage reports whether a cold request should get the waiting
// page: a browser navigating (GET, accepting HTML, not an upgrade).
func (r *route) wantsWaitingPage(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	return r.waiting != nil && h.IsGet() && !isUpgrade(h) &&
		bytes.Contains(h.Peek(fasthttp.HeaderAccept), []byte("text/html"))
}

const defaultWaitingPage = `<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="{{.RefreshSeconds}}">
<title>Starting {{.Host}}…</title>
<style>body{font-family:system-ui,sans-serif;display:grid;place-items:center;height:90vh;color:#333}</style>
</head><body><div><h1>Starting {{.Host}}…</h1>
<p>This app was idle and is waking up. This page reloads itself every {{.RefreshSeconds}} seconds.</p>
</div></body></html>
`

// waitingPageData is what a waiting page template may use.
type waitingPageData struct {
	Host, Service  string
	RefreshSeconds int
}

func parseWaitingPage(text string) (*template.Template, error) {
	if text == "" {
		text = defaultWaitingPage
	}
	return template.New("waiting").Parse(text)
}

// serveWaitingPage answers 503 with the page. 503 keeps caches and
// crawlers from taking the page for the app; browsers show it all the same.
func (p *Proxy) serveWaitingPage(ctx *fasthttp.RequestCtx, r *route) {
	var b bytes.Buffer
	refresh := 2
	if err := r.waiting.Execute(&b, waitingPageData{Host: r.host, Service: r.svc.ServiceName, RefreshSeconds: refresh}); err != nil {
		p.log.Warn().Err(err).Str("host", r.host).Msg("waiting page template failed")
		p.coldRetry(ctx, r, "service "+r.host+" is starting")
		return
	}
	if !bodyConsumed(ctx) {
		ctx.SetConnectionClose()
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(refresh))
	ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.SetBody(b.Bytes())
}

// coldStarts learns how long a service takes to become ready, to answer
// Retry-After with what a client should really wait (issue 7).
type coldStarts struct {
	ewmaMillis atomic.Int64 // exponentially weighted mean; 0 until the first
}

// observe records one park that ended in release after d.
func (c *coldStarts) observe(d time.Duration) {
	ms := d.Milliseconds()
	for {
		old := c.ewmaMillis.Load()
		next := ms
		if old > 0 {
			next = (old*7 + ms) / 8
		}
		if next == 0 {
			next = 1
		}
		if c.ewmaMillis.CompareAndSwap(old, next) {
			return
		}
	}
}

// retryAfter is the learned cold-start time in whole seconds, at least 1
// and at most 120, or def when nothing was learned yet.
func (c *coldStarts) retryAfter(def int) int {
	ms := c.ewmaMillis.Load()
	if ms == 0 {
		return def
	}
	return int(min(max(math.Ceil(float64(ms)/1000), 1), 120))
}

// coldRetry answers 503 with a Retry-After learned from r's cold starts.
func (p *Proxy) coldRetry(ctx *fasthttp.RequestCtx, r *route, msg string) {
	p.answer503(ctx, r.cold.retryAfter(p.opts.RetryAfter), msg)
}

// serveProbe answers a health checker's request without counting it as
// activity: forwarded if the service is up, answered here if it is cold,
// so that probes neither wake a service nor keep it awake (issue 7).
func (p *Proxy) serveProbe(ctx *fasthttp.RequestCtx, r *route) {
	r.m.probes.Inc()
	st := r.ready.State()
	if !st.Ready {
		if !bodyConsumed(ctx) {
			ctx.SetConnectionClose()
		}
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.Response.SetBodyString("ok: " + r.host + " is scaled to zero; Agimo answered for it\n")
		return
	}
	p.forward(ctx, r, st, time.Now().Add(r.timeout), false)
}
