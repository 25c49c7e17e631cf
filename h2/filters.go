package h2

import (
	"net"
	"net/http"
	"net/url"

	"github.com/agimo/agimo/route"
)

// lookupRequest is a stream's request as route.Lookup reads it beyond host
// and path (route.Request): a struct of one pointer, which becomes the
// interface without allocating (http.Request's fields are named as the
// interface's methods, so a named pointer type cannot be). Its methods
// run only for rules that match a method, header or query, and copy what
// they return.
type lookupRequest struct{ r *http.Request }

func (q lookupRequest) Method() []byte { return []byte(q.r.Method) }

// Header returns the first value of the field; names come canonical
// (route.Match), as x/net/http2 stores them. Host is the :authority, as
// fasthttp's Peek("Host") is the HTTP/1.1 front end's.
func (q lookupRequest) Header(name string) ([]byte, bool) {
	if name == "Host" {
		return []byte(q.r.Host), true
	}
	vv := q.r.Header[name]
	if len(vv) == 0 {
		return nil, false
	}
	return []byte(vv[0]), true
}

func (q lookupRequest) RawQuery() []byte { return []byte(q.r.URL.RawQuery) }

// answer sends r's own answer to the stream, if it has one (a fixed status
// or a Gateway API RequestRedirect: route.Route.Answer), and reports
// whether it did, as the HTTP/1.1 front end's answer does.
func (s *Server) answer(w http.ResponseWriter, req *http.Request, r *route.Route, host, uri []byte, g bool) bool {
	if !r.Svc.AnswersItself() {
		return false
	}
	port := 0
	if a, ok := req.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		port = a.Port
	}
	status, loc := r.Answer(overTLS(req), port, host, route.Path(uri), uri)
	if status == 0 {
		return false
	}
	setReason(w, reasonFixed)
	if loc != nil {
		setReason(w, reasonRouteRedirect)
		w.Header().Set("Location", string(loc))
	}
	s.refuse(w, g, status, 0, http.StatusText(status))
	return true
}

// rewrite returns the Host and origin-form target r's URLRewrite sends
// upstream for in ("" and nil: unchanged); X-Forwarded-Host keeps the
// client's host.
func rewrite(in *http.Request, r *route.Route) (host string, target []byte) {
	if r.Svc.Filters == nil {
		return "", nil
	}
	uri := []byte(in.RequestURI)
	return r.Rewrite(route.Path(uri), uri)
}

// setURLTarget sets u's path and query to target, an origin-form target,
// keeping its escaping as written.
func setURLTarget(u *url.URL, target []byte) {
	t, err := url.ParseRequestURI(string(target))
	if err != nil {
		return // built from a valid path and query: not reached
	}
	u.Path, u.RawPath, u.RawQuery, u.Opaque = t.Path, t.RawPath, t.RawQuery, ""
}
