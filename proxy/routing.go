package proxy

import (
	"bytes"
	"net"
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
	return p.core.Routes().Lookup(host, route.Path(uri), (*lookupRequest)(ctx))
}

// lookupRequest is a request as route.Lookup reads it beyond host and
// path (route.Request): a named pointer type, which becomes the interface
// without allocating.
type lookupRequest fasthttp.RequestCtx

func (q *lookupRequest) Method() []byte { return q.Request.Header.Method() }

// Header returns the first value of the field (fasthttp's Peek, whose
// names are case-insensitive).
func (q *lookupRequest) Header(name string) ([]byte, bool) {
	v := q.Request.Header.Peek(name)
	return v, v != nil
}

// RawQuery reads the target as sent: parsing it into fasthttp's URI would
// make fasthttp send the parsed form upstream instead.
func (q *lookupRequest) RawQuery() []byte {
	uri := q.Request.Header.RequestURI()
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		return uri[i+1:]
	}
	return nil
}

// answer sends r's own answer to the request, if it has one (a fixed
// status or a Gateway API RequestRedirect: route.Route.Answer), and
// reports whether it did. Nothing goes upstream, nothing is counted.
func (p *Proxy) answer(ctx *fasthttp.RequestCtx, r *route.Route) bool {
	if !r.Svc.AnswersItself() {
		return false
	}
	h := &ctx.Request.Header
	uri := h.RequestURI()
	host, _ := route.Authority(uri, h.Host())
	status, loc := r.Answer(overTLS(ctx.Conn()), localPort(ctx.LocalAddr()), host, route.Path(uri), uri)
	if status == 0 {
		return false
	}
	x := exchangeOf(ctx)
	x.reason = reasonFixed
	if loc != nil {
		x.reason = reasonRouteRedirect
		ctx.Response.Header.SetBytesV(fasthttp.HeaderLocation, loc)
	}
	p.reply(ctx, status, fasthttp.StatusMessage(status))
	return true
}

// filterRequest applies r's Gateway API filters to the request going
// upstream: URLRewrite (Host and target; X-Forwarded-Host keeps the
// client's host) and RequestHeaderModifier.
func filterRequest(req *fasthttp.Request, r *route.Route) {
	if r == nil || r.Svc.Filters == nil {
		return
	}
	uri := req.Header.RequestURI()
	host, target := r.Rewrite(route.Path(uri), uri)
	if host != "" {
		req.Header.SetHost(host)
	}
	if target != nil {
		// Origin-form, sent as it is: the parsed URI is dropped.
		req.SetRequestURIBytes(target)
	}
	r.EditRequest(&req.Header)
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

// localPort is the port of a listener's address, 0 if it has none.
func localPort(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}
