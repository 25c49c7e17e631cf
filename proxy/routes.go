package proxy

import (
	"bytes"
	"fmt"
	"html/template"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/watch"
)

// table is an immutable routing snapshot: swapped whole, never mutated, so
// the request path reads it without a lock.
type table struct {
	byHost map[string]*route
}

// route is one configured service as the request path needs it.
type route struct {
	host            string
	svc             conf.Service
	ready           *watch.Service
	timeout         time.Duration
	upstreamTimeout time.Duration
	// bodyTimeout and sendTimeout are client_body_timeout and send_timeout.
	bodyTimeout, sendTimeout time.Duration
	// target is a fixed upstream address (address override or dial =
	// "service"); "" sends requests to ready endpoints.
	target string
	m      *hostMetrics
	next   atomic.Uint32 // round-robin cursor over ready endpoints
	// parked counts parked requests against maxParked.
	parked    atomic.Int64
	maxParked int64
	// waiting is the waiting page, nil if the service has none.
	waiting *template.Template
	cold    coldStarts
	cs      atomic.Pointer[coldStart] // the cold start under way, if any
}

func (p *Proxy) buildTable(cfg *conf.Config) (*table, error) {
	t := &table{byHost: make(map[string]*route, len(cfg.Services))}
	for _, s := range cfg.Services {
		k := watch.Key{Namespace: s.Namespace, Service: s.ServiceName, Port: int32(s.ServicePort)}
		ws := p.ready.Service(k)
		if ws == nil {
			return nil, fmt.Errorf("route %s: no readiness watch for %s/%s:%d", s.Host, k.Namespace, k.Service, k.Port)
		}
		var waiting *template.Template
		if s.WaitingPage {
			var err error
			if waiting, err = parseWaitingPage(s.WaitingPageTemplate); err != nil {
				return nil, fmt.Errorf("route %s: waiting page: %w", s.Host, err)
			}
		}
		t.byHost[s.Host] = &route{
			waiting:         waiting,
			host:            s.Host,
			svc:             s,
			ready:           ws,
			timeout:         s.Timeout.Duration,
			upstreamTimeout: s.UpstreamTimeout.Duration,
			bodyTimeout:     s.ClientBodyTimeout.Duration,
			sendTimeout:     s.SendTimeout.Duration,
			target:          s.TargetAddr(),
			maxParked:       int64(s.MaxParked),
			m:               newHostMetrics(p.metrics, s.Host),
		}
	}
	return t, nil
}

// Keys lists the readiness keys cfg needs, for watch.New.
func Keys(cfg *conf.Config) []watch.Key {
	keys := make([]watch.Key, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		keys = append(keys, watch.Key{Namespace: s.Namespace, Service: s.ServiceName, Port: int32(s.ServicePort)})
	}
	return keys
}

// lookup finds the route for a request by the host it is for (see
// requestHost). It returns status 400 for a missing or invalid host and 404
// for a host no service claims (issue 2). It changes nothing in the
// request: normalizeRequest makes Host agree before it goes upstream.
func (p *Proxy) lookup(ctx *fasthttp.RequestCtx) (*route, int) {
	host, ok := requestHost(&ctx.Request)
	if !ok {
		return nil, fasthttp.StatusBadRequest
	}
	var buf [128]byte
	key, ok := conf.AppendHost(buf[:0], host)
	if !ok {
		return nil, fasthttp.StatusBadRequest
	}
	// The string conversions in map indexes do not allocate.
	t := p.routes.Load()
	if r := t.byHost[string(key)]; r != nil {
		return r, 0
	}
	// Then a wildcard: "*.example.com" for "app.example.com".
	if i := bytes.IndexByte(key, '.'); i > 0 {
		key[i-1] = '*'
		if r := t.byHost[string(key[i-1:])]; r != nil {
			return r, 0
		}
	}
	return nil, fasthttp.StatusNotFound
}

// requestHost returns the host a request is for: the authority of an
// absolute-form target, which wins over Host (RFC 9112 §3.2.2), else Host.
// It reports false for a target with userinfo, which RFC 9110 §4.2.4 says
// to treat as an error (and fasthttp would turn into an Authorization
// header).
func requestHost(req *fasthttp.Request) ([]byte, bool) {
	uri := req.Header.RequestURI()
	if !isAbsoluteForm(uri) {
		return req.Header.Host(), true
	}
	_, rest, _ := bytes.Cut(uri, []byte("://"))
	if end := bytes.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	if bytes.IndexByte(rest, '@') >= 0 {
		return nil, false
	}
	return req.URI().Host(), true
}

// normalizeRequest makes a routed request agree with the host it was
// routed by: for an absolute-form target, the Host sent upstream becomes
// the target's authority (RFC 9112 §3.2.2) and the scheme http, as the
// upstream hop is plain HTTP whatever scheme the client named. It runs in
// prepareRequest, so every request that goes upstream passes here: one
// forwarded at once, one that parked on its goroutine, and one replayed
// from the lot, whose head is the client's as received (issue 10).
func normalizeRequest(req *fasthttp.Request) {
	if !isAbsoluteForm(req.Header.RequestURI()) {
		return
	}
	u := req.URI()
	req.Header.SetHostBytes(u.Host())
	u.SetScheme("http")
}

// requestPath returns the path of a request target as sent: for
// absolute-form, what follows the authority; in every form, what comes
// before the query. Nothing is decoded or normalised: these are the bytes
// the upstream will see.
func requestPath(uri []byte) []byte {
	if isAbsoluteForm(uri) {
		_, uri, _ = bytes.Cut(uri, []byte("://"))
		end := bytes.IndexAny(uri, "/?#")
		if end < 0 {
			return nil
		}
		uri = uri[end:]
	}
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return uri
}

// isAbsoluteForm reports whether a request target is "http://..." or
// "https://...", compared without regard to case.
func isAbsoluteForm(uri []byte) bool {
	if len(uri) < 8 || uri[0] == '/' {
		return false
	}
	scheme, _, ok := bytes.Cut(uri, []byte("://"))
	return ok && (bytes.EqualFold(scheme, []byte("http")) || bytes.EqualFold(scheme, []byte("https")))
}
