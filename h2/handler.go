package h2

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/agimo/agimo/park"
	"github.com/agimo/agimo/route"
)

// ServeHTTP serves one stream: the same steps, in the same order, as the
// HTTP/1.1 front end's handler (proxy.handle).
func (s *Server) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	x := s.begin(rw, req)
	defer x.end()
	var w http.ResponseWriter = x
	g := isGRPC(req)
	if req.Method == http.MethodConnect {
		x.reason = reasonBadRequest
		// Agimo is not a forward proxy: CONNECT (RFC 9113 §8.5) is never
		// tunnelled, as over HTTP/1.1 (proxy.checkRequest).
		s.refuse(w, g, http.StatusMethodNotAllowed, 0, "CONNECT is not supported")
		return
	}
	uri := []byte(req.RequestURI)
	host, ok := route.Authority(uri, []byte(req.Host))
	var r *route.Route
	status := http.StatusBadRequest
	if ok {
		r, status = s.core.Routes().Lookup(host, route.Path(uri), lookupRequest{req})
	}
	if r == nil {
		x.reason = reasonNoRoute
		if status == http.StatusBadRequest {
			x.reason = reasonBadRequest
		}
		s.log.Debug().Str("host", req.Host).Int("status", status).Str("remote", req.RemoteAddr).Msg("no route")
		s.refuse(w, g, status, 0, http.StatusText(status))
		return
	}
	x.route = r
	if s.answer(w, req, r, host, uri, g) {
		return
	}
	if r.HasProbes() && r.IsProbe(route.Path(uri), []byte(req.UserAgent())) {
		s.serveProbe(w, req, r, g)
		return
	}
	if r.Svc.HTTPSRedirect && !overTLS(req) {
		// 308 to the https URL; not counted: nothing went to the service.
		x.reason = reasonRedirect
		w.Header().Set("Location", string(route.HTTPSLocation([]byte(req.Host), uri)))
		s.refuse(w, g, http.StatusPermanentRedirect, 0, "use https")
		return
	}
	r.CountRequest()
	defer r.EndRequest()

	if s.maxBody > 0 {
		if req.ContentLength > s.maxBody {
			s.log.Debug().Str("host", r.Host).Int64("length", req.ContentLength).Msg("request body over max_request_body")
			x.reason = reasonBodyTooLarge
			s.refuse(w, g, http.StatusRequestEntityTooLarge, 0, "request body larger than "+strconv.FormatInt(s.maxBody, 10)+" bytes")
			return
		}
		req.Body = http.MaxBytesReader(w, req.Body, s.maxBody)
	}
	if hasBody(req) {
		req.Body = newClientBody(w, req.Body, r.BodyTimeout)
	}

	deadline := time.Now().Add(r.Timeout)
	var callTimeout time.Duration // grpc-timeout, if it is the tighter bound
	if g {
		// grpc-timeout bounds the whole call: the park may not outlast it.
		if d, ok := grpcTimeout(req.Header.Get("Grpc-Timeout")); ok && d < r.Timeout {
			deadline = time.Now().Add(d)
			callTimeout = d
		}
	}
	st := r.Ready.State()
	if !st.Ready && !g && r.WantsWaitingPage(req.Method == http.MethodGet, []byte(req.Header.Get("Accept")), false) {
		s.core.Policy.Begin(r, x.tr)
		x.reason = reasonWaitingPage
		s.serveWaitingPage(w, r)
		return
	}
	if !st.Ready {
		var err error
		parkStart := time.Now()
		st, err = s.core.Waiter.Wait(r, deadline, req.Context().Done(), x.tr)
		parkEnd := time.Now()
		x.parkedFor(parkEnd.Sub(parkStart))
		x.tr.Park(parkStart, parkEnd, err)
		if err != nil {
			s.parkFailed(w, r, g, err, callTimeout)
			return
		}
	}
	s.forward(w, req, r, st, deadline, g)
}

// parkFailed answers a stream whose park ended without readiness;
// callTimeout is the call's grpc-timeout if it bounded the park.
func (s *Server) parkFailed(w http.ResponseWriter, r *route.Route, g bool, err error, callTimeout time.Duration) {
	switch {
	case errors.Is(err, park.ErrClientGone):
		// The stream was reset or the connection closed: nobody to answer.
		setReason(w, reasonClientGone)
		s.log.Debug().Str("host", r.Host).Msg("client left while parked")
	case errors.Is(err, park.ErrStopping):
		setReason(w, reasonShutdown)
		s.refuse(w, g, http.StatusServiceUnavailable, s.core.Opts.RetryAfter, "agimo is shutting down")
	case errors.Is(err, park.ErrFull):
		setReason(w, reasonMaxParked)
		r.M.Rejected.Inc()
		s.log.Debug().Str("host", r.Host).Int64("max_parked", r.MaxParked).Msg("park rejected")
		s.refuse(w, g, http.StatusServiceUnavailable, r.RetryAfter(s.core.Opts.RetryAfter), "too many requests waiting for service "+r.Host)
	case callTimeout > 0:
		// The call's own deadline ended the park: DEADLINE_EXCEEDED (504
		// maps to it), the status the client reports when its deadline
		// passes first, so the outcome does not depend on who is faster.
		setReason(w, reasonParkTimeout)
		r.M.Timeouts.Inc()
		s.log.Debug().Str("host", r.Host).Dur("grpc-timeout", callTimeout).Msg("park ended at the call's deadline")
		s.refuse(w, g, http.StatusGatewayTimeout, 0, "service "+r.Host+" did not become ready within the call's grpc-timeout "+callTimeout.String())
	default:
		setReason(w, reasonParkTimeout)
		r.M.Timeouts.Inc()
		s.log.Debug().Str("host", r.Host).Dur("timeout", r.Timeout).Msg("park timed out")
		s.refuse(w, g, http.StatusServiceUnavailable, r.RetryAfter(s.core.Opts.RetryAfter), "service "+r.Host+" did not become ready within "+r.Timeout.String())
	}
}

// refuse sends Agimo's own answer: status with a short plain-text body and,
// for 503, Retry-After; to a gRPC client, the gRPC status that says the
// same (grpc.go).
func (s *Server) refuse(w http.ResponseWriter, g bool, status, retryAfter int, msg string) {
	if g {
		grpcRefuse(w, status, msg)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if status == http.StatusServiceUnavailable && retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

// serveWaitingPage answers a browser's navigation to a cold service with
// its waiting page (503, as the HTTP/1.1 front end).
func (s *Server) serveWaitingPage(w http.ResponseWriter, r *route.Route) {
	page, err := r.WaitingPage()
	if err != nil {
		s.log.Warn().Err(err).Str("host", r.Host).Msg("waiting page template failed")
		s.refuse(w, false, http.StatusServiceUnavailable, r.RetryAfter(s.core.Opts.RetryAfter), "service "+r.Host+" is starting")
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", strconv.Itoa(route.WaitingRefresh))
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(page)
}

// serveProbe answers a health checker without counting it as activity:
// forwarded if the service is up, answered here if it is cold (issue 7).
func (s *Server) serveProbe(w http.ResponseWriter, req *http.Request, r *route.Route, g bool) {
	r.M.Probes.Inc()
	st := r.Ready.State()
	if !st.Ready {
		setReason(w, reasonProbe)
		if g {
			grpcProbe(w, req.URL.Path, r.Host)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok: " + r.Host + " is scaled to zero; Agimo answered for it\n"))
		return
	}
	s.forward(w, req, r, st, time.Now().Add(r.Timeout), g)
}

// overTLS reports whether the stream's connection arrived over TLS.
func overTLS(req *http.Request) bool {
	v, _ := req.Context().Value(tlsKey{}).(bool)
	return v || req.TLS != nil
}

// hasBody reports whether a stream carries a body: x/net/http2 leaves
// ContentLength 0 for a HEADERS frame that ended the stream (RFC 9113
// §8.1), -1 for a body of unknown length.
func hasBody(req *http.Request) bool { return req.ContentLength != 0 }
