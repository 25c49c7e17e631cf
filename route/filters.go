package route

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/agimo/agimo/conf"
)

// Filters (Gateway API HTTPRoute filters, conf.Filters), in the terms both
// front ends share so that they give the same answers: Answer for the
// requests a route answers itself (a fixed status, RequestRedirect),
// Rewrite for URLRewrite, EditRequest and EditResponse for the header
// modifiers.

// Answer returns the status, and for a redirect the Location, with which
// r answers a request itself, or 0: a fixed status (conf.Extras.Fixed),
// or its RequestRedirect for a request with this host (as routed, see
// Authority), raw path and target uri (its query is kept), arrived over
// TLS or not on the listener port listenerPort (0 if unknown). Only a
// redirect allocates.
func (r *Route) Answer(tls bool, listenerPort int, host, path, uri []byte) (status int, location []byte) {
	if r.Svc.Fixed != 0 {
		return r.Svc.Fixed, nil
	}
	if r.Svc.Filters == nil || r.Svc.Filters.Redirect == nil {
		return 0, nil
	}
	rd := r.Svc.Filters.Redirect
	status = rd.StatusCode
	if status == 0 {
		status = http.StatusFound
	}
	// Gateway API HTTPRequestRedirectFilter: an empty scheme or hostname
	// keeps the request's; with no port, a scheme that is set brings its
	// well-known port, else the port is the Gateway listener's (the one
	// the request arrived on), not the one the client named in Host
	// (HTTPRequestRedirectFilter.Port); it is left out when it is the
	// scheme's default.
	scheme := rd.Scheme
	if scheme == "" {
		scheme = "http"
		if tls {
			scheme = "https"
		}
	}
	hostname, port := splitHost(string(host))
	if rd.Hostname != "" {
		hostname = rd.Hostname
	}
	switch {
	case rd.Port != 0:
		port = strconv.Itoa(rd.Port)
	case rd.Scheme != "":
		port = ""
	case listenerPort != 0:
		port = strconv.Itoa(listenerPort)
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" || strings.IndexByte(hostname, ':') >= 0 {
		hostname = net.JoinHostPort(hostname, port)
		if port == "" {
			hostname = strings.TrimSuffix(hostname, ":") // an IPv6 literal, bracketed
		}
	}
	loc := make([]byte, 0, len(scheme)+3+len(hostname)+len(uri))
	loc = append(append(append(loc, scheme...), "://"...), hostname...)
	if rd.Path != nil {
		loc = r.modifyPath(loc, rd.Path, path)
	} else if len(path) == 0 || path[0] != '/' {
		loc = append(append(loc, '/'), path...)
	} else {
		loc = append(loc, path...)
	}
	return status, append(loc, query(uri)...)
}

// splitHost splits a Host value into its hostname (an IPv6 literal
// without brackets) and port ("" if none).
func splitHost(h string) (string, string) {
	if hn, port, err := net.SplitHostPort(h); err == nil {
		return hn, port
	}
	return strings.Trim(h, "[]"), ""
}

// query returns uri's query with its "?", or nil.
func query(uri []byte) []byte {
	for i, c := range uri {
		if c == '?' {
			return uri[i:]
		}
	}
	return nil
}

// Rewrite returns the Host and request target to send upstream under r's
// URLRewrite filter (Gateway API HTTPURLRewriteFilter), for a request with
// this raw path and target uri: host "" keeps the request's Host, target
// nil its target. The rewritten target is origin-form, its query the
// request's.
func (r *Route) Rewrite(path, uri []byte) (host string, target []byte) {
	if r.Svc.Filters == nil || r.Svc.Filters.Rewrite == nil {
		return "", nil
	}
	rw := r.Svc.Filters.Rewrite
	if rw.Path != nil {
		q := query(uri)
		target = r.modifyPath(make([]byte, 0, len(path)+len(rw.Path.ReplaceFullPath)+len(rw.Path.ReplacePrefixMatch)+len(q)), rw.Path, path)
		target = append(target, q...)
	}
	return rw.Hostname, target
}

// modifyPath appends path as m modifies it (HTTPPathModifier).
// ReplacePrefixMatch replaces the part of the path r's prefix matched, on
// segment boundaries, and keeps the rest: with prefix "/foo", "/foo/bar"
// becomes "/xyz/bar" for "/xyz" or "/xyz/", and "/bar" for "/" or "";
// "/foo" becomes "/xyz", and "/foo/" "/xyz/" (the spec's table).
func (r *Route) modifyPath(dst []byte, m *conf.PathModifier, path []byte) []byte {
	if !m.Prefix {
		if m.ReplaceFullPath == "" {
			return append(dst, '/')
		}
		return append(dst, m.ReplaceFullPath...)
	}
	rest := path[len(r.matchedPrefix(path)):]
	repl := strings.TrimSuffix(m.ReplacePrefixMatch, "/")
	if (repl == "" && (len(rest) == 0 || rest[0] != '/')) || (repl != "" && repl[0] != '/') {
		dst = append(dst, '/')
	}
	return append(append(dst, repl...), rest...)
}

// matchedPrefix returns the part of path that r's rule matched: an exact
// path whole, else the longest of r's prefixes that accepts it ("" for
// "/").
func (r *Route) matchedPrefix(path []byte) string {
	for _, p := range r.Svc.ExactPaths {
		if string(path) == p {
			return p
		}
	}
	best := ""
	for _, p := range r.Svc.Paths {
		m := Match{PathPrefix: p}
		if p != "/" && len(p) > len(best) && m.acceptsPath(path) {
			best = p
		}
	}
	return best
}

// Fields is a header block the header modifiers edit: http.Header and
// fasthttp's request and response headers all are.
type Fields interface {
	Set(name, value string)
	Add(name, value string)
	Del(name string)
}

// EditRequest applies r's RequestHeaderModifier to the request headers
// sent upstream; EditResponse its ResponseHeaderModifier to the response
// headers returned.
func (r *Route) EditRequest(f Fields) {
	if r.Svc.Filters != nil && r.Svc.Filters.RequestHeaders != nil {
		editHeaders(f, r.Svc.Filters.RequestHeaders)
	}
}

// EditResponse applies r's ResponseHeaderModifier (see EditRequest).
func (r *Route) EditResponse(f Fields) {
	if r.Svc.Filters != nil && r.Svc.Filters.ResponseHeaders != nil {
		editHeaders(f, r.Svc.Filters.ResponseHeaders)
	}
}

// editHeaders applies e: Remove first, then Set, then Add (Envoy's order:
// a field both removed and set ends set).
func editHeaders(f Fields, e *conf.HeaderEdit) {
	for _, n := range e.Remove {
		f.Del(n)
	}
	for _, h := range e.Set {
		f.Set(h.Name, h.Value)
	}
	for _, h := range e.Add {
		f.Add(h.Name, h.Value)
	}
}
