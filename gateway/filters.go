package gateway

import (
	"fmt"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/agimo/agimo/conf"
)

// httpRoute reduces an HTTPRoute to a route.
func httpRoute(hr *gwv1.HTTPRoute) route {
	r := route{kind: "HTTPRoute", meta: &hr.ObjectMeta, parents: hr.Spec.ParentRefs, hostnames: hr.Spec.Hostnames, protocol: conf.ProtocolAuto}
	for _, hru := range hr.Spec.Rules {
		var ru rule
		ru.filters, ru.bad = httpFilters(hru.Filters, false)
		matches := hru.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}} // every request
		}
		prefixOnly := ru.filters != nil && (ru.filters.Redirect != nil && ru.filters.Redirect.Path != nil && ru.filters.Redirect.Path.Prefix ||
			ru.filters.Rewrite != nil && ru.filters.Rewrite.Path != nil && ru.filters.Rewrite.Path.Prefix)
		for _, hm := range matches {
			m := httpMatch(hm)
			if m.bad == "" && prefixOnly && m.exact {
				m.bad = "ReplacePrefixMatch needs a PathPrefix match"
			}
			ru.matches = append(ru.matches, m)
		}
		for _, b := range hru.BackendRefs {
			be := backend{ref: b.BackendObjectReference, weight: weight(b.Weight)}
			be.filters, be.bad = httpFilters(b.Filters, true)
			ru.backends = append(ru.backends, be)
		}
		r.rules = append(r.rules, ru)
	}
	return r
}

// weight is a backendRef's weight, 1 by default.
func weight(w *int32) int32 {
	if w == nil {
		return 1
	}
	return *w
}

// httpMatch converts one HTTPRouteMatch: a path (PathPrefix "/" by
// default) and its conditions.
func httpMatch(hm gwv1.HTTPRouteMatch) match {
	m := match{path: "/"}
	if p := hm.Path; p != nil {
		if p.Value != nil {
			m.path = *p.Value
		}
		if p.Type != nil {
			switch *p.Type {
			case gwv1.PathMatchExact:
				m.exact = true
			case gwv1.PathMatchPathPrefix:
			default:
				m.bad = fmt.Sprintf("path match type %s is not supported", *p.Type)
			}
		}
	}
	for _, h := range hm.Headers {
		m.extras.Headers = append(m.extras.Headers, conf.ValueMatch{Name: string(h.Name), Value: h.Value,
			Regex: h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression})
	}
	for _, q := range hm.QueryParams {
		m.extras.Query = append(m.extras.Query, conf.ValueMatch{Name: string(q.Name), Value: q.Value,
			Regex: q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression})
	}
	if hm.Method != nil {
		m.extras.Method = string(*hm.Method)
	}
	return m
}

// httpFilters converts the Core filters; the others, and a redirect on a
// backendRef, are not supported: the second result says why.
func httpFilters(fs []gwv1.HTTPRouteFilter, onBackend bool) (*conf.Filters, string) {
	if len(fs) == 0 {
		return nil, ""
	}
	out := &conf.Filters{}
	var bad []string
	for _, f := range fs {
		switch {
		case f.Type == gwv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
			out.RequestHeaders = appendEdit(out.RequestHeaders, f.RequestHeaderModifier)
		case f.Type == gwv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
			out.ResponseHeaders = appendEdit(out.ResponseHeaders, f.ResponseHeaderModifier)
		case f.Type == gwv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil && !onBackend:
			rr := f.RequestRedirect
			rd := &conf.Redirect{StatusCode: 302, Path: pathModifier(rr.Path)}
			if rr.Scheme != nil {
				rd.Scheme = *rr.Scheme
			}
			if rr.Hostname != nil {
				rd.Hostname = string(*rr.Hostname)
			}
			if rr.Port != nil {
				rd.Port = int(*rr.Port)
			}
			if rr.StatusCode != nil {
				rd.StatusCode = *rr.StatusCode
			}
			out.Redirect = rd
		case f.Type == gwv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
			rw := &conf.Rewrite{Path: pathModifier(f.URLRewrite.Path)}
			if f.URLRewrite.Hostname != nil {
				rw.Hostname = string(*f.URLRewrite.Hostname)
			}
			out.Rewrite = rw
		default:
			bad = append(bad, fmt.Sprintf("filter %s is not supported", f.Type))
		}
	}
	if out.Redirect != nil && out.Rewrite != nil {
		// HTTPRoute filters: "RequestRedirect and URLRewrite cannot both
		// be set on the same rule".
		bad = append(bad, "RequestRedirect and URLRewrite together are not allowed")
	}
	return out, strings.Join(bad, "; ")
}

func appendEdit(e *conf.HeaderEdit, f *gwv1.HTTPHeaderFilter) *conf.HeaderEdit {
	if e == nil {
		e = &conf.HeaderEdit{}
	}
	for _, h := range f.Set {
		e.Set = append(e.Set, conf.Header{Name: string(h.Name), Value: h.Value})
	}
	for _, h := range f.Add {
		e.Add = append(e.Add, conf.Header{Name: string(h.Name), Value: h.Value})
	}
	e.Remove = append(e.Remove, f.Remove...)
	return e
}

func pathModifier(p *gwv1.HTTPPathModifier) *conf.PathModifier {
	switch {
	case p == nil:
		return nil
	case p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
		return &conf.PathModifier{ReplacePrefixMatch: *p.ReplacePrefixMatch, Prefix: true}
	case p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
		return &conf.PathModifier{ReplaceFullPath: *p.ReplaceFullPath}
	}
	return nil
}

// merge folds a backendRef's filters into its rule's: header edits add
// up, the backend's rewrite wins.
func merge(ru, be *conf.Filters) *conf.Filters {
	if be == nil {
		return ru
	}
	if ru == nil {
		return be
	}
	out := *ru
	join := func(a, b *conf.HeaderEdit) *conf.HeaderEdit {
		if a == nil || b == nil {
			if a == nil {
				return b
			}
			return a
		}
		return &conf.HeaderEdit{Set: append(append([]conf.Header(nil), a.Set...), b.Set...),
			Add: append(append([]conf.Header(nil), a.Add...), b.Add...), Remove: append(append([]string(nil), a.Remove...), b.Remove...)}
	}
	out.RequestHeaders = join(ru.RequestHeaders, be.RequestHeaders)
	out.ResponseHeaders = join(ru.ResponseHeaders, be.ResponseHeaders)
	if be.Rewrite != nil {
		out.Rewrite = be.Rewrite
	}
	return &out
}

// grpcRoute reduces a GRPCRoute to a route: a method match is a path,
// "/SERVICE/METHOD" exactly or "/SERVICE" as a prefix (gRPC over HTTP/2,
// the ":path" of a call), served over h2c.
func grpcRoute(gr *gwv1.GRPCRoute) route {
	r := route{kind: "GRPCRoute", meta: &gr.ObjectMeta, parents: gr.Spec.ParentRefs, hostnames: gr.Spec.Hostnames, protocol: conf.ProtocolH2C}
	for _, gru := range gr.Spec.Rules {
		var ru rule
		ru.filters, ru.bad = grpcFilters(gru.Filters)
		matches := gru.Matches
		if len(matches) == 0 {
			matches = []gwv1.GRPCRouteMatch{{}}
		}
		for _, gm := range matches {
			ru.matches = append(ru.matches, grpcMatch(gm))
		}
		for _, b := range gru.BackendRefs {
			be := backend{ref: b.BackendObjectReference, weight: weight(b.Weight)}
			be.filters, be.bad = grpcFilters(b.Filters)
			ru.backends = append(ru.backends, be)
		}
		r.rules = append(r.rules, ru)
	}
	return r
}

func grpcMatch(gm gwv1.GRPCRouteMatch) match {
	m := match{path: "/"}
	if mm := gm.Method; mm != nil {
		switch {
		case mm.Type != nil && *mm.Type != gwv1.GRPCMethodMatchExact:
			m.bad = fmt.Sprintf("method match type %s is not supported", *mm.Type)
		case mm.Service != nil && mm.Method != nil:
			m.path, m.exact = "/"+*mm.Service+"/"+*mm.Method, true
		case mm.Service != nil:
			m.path = "/" + *mm.Service
		case mm.Method != nil:
			m.bad = "a method match without a service is not supported"
		}
	}
	for _, h := range gm.Headers {
		m.extras.Headers = append(m.extras.Headers, conf.ValueMatch{Name: string(h.Name), Value: h.Value,
			Regex: h.Type != nil && *h.Type == gwv1.GRPCHeaderMatchRegularExpression})
	}
	return m
}

// grpcFilters converts a GRPCRoute's header filters; the others are not
// supported.
func grpcFilters(fs []gwv1.GRPCRouteFilter) (*conf.Filters, string) {
	hf := make([]gwv1.HTTPRouteFilter, 0, len(fs))
	var bad []string
	for _, f := range fs {
		switch f.Type {
		case gwv1.GRPCRouteFilterRequestHeaderModifier:
			hf = append(hf, gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: f.RequestHeaderModifier})
		case gwv1.GRPCRouteFilterResponseHeaderModifier:
			hf = append(hf, gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: f.ResponseHeaderModifier})
		default:
			bad = append(bad, fmt.Sprintf("filter %s is not supported", f.Type))
		}
	}
	out, msg := httpFilters(hf, true)
	if msg != "" {
		bad = append(bad, msg)
	}
	return out, strings.Join(bad, "; ")
}
