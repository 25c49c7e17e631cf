package h2_test

import (
	"cmp"
	"net/http"
	"testing"

	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/route/routetest"
)

// routetest.GatewayHost is one host with the rules a Gateway API HTTPRoute makes
// (proxy's TestGatewayRules) to a header match, a URL rewrite with
// request and response header edits, and a redirect, with the rewritten
// route's upstream over HTTP/1.1 and over h2c (the front end's two ways
// to forward).
func TestGatewayRules(t *testing.T) {
	for _, appProto := range []string{"", route.AppProtocolH2C} {
		t.Run("rw upstream "+cmp.Or(appProto, "http/1.1"), func(t *testing.T) {
			al, lines := newAccessLog(t)
			h := startHarnessWith(t, routetest.GatewayHost, harnessOpts{extras: routetest.GatewayExtras, accessLog: al})
			for _, name := range []string{"web", "canary"} {
				h.setEndpoints("apps", name, "", true, newH1UpstreamFunc(t, routetest.EchoRequest(name)).addr())
			}
			rw := newH1UpstreamFunc(t, routetest.EchoRequest("rw")).addr()
			if appProto != "" {
				rw = startH2CApp(t, routetest.EchoRequest("rw"))
			}
			h.setEndpoints("apps", "rw", appProto, true, rw)
			c := h2cClient(t, h.addr)
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			for _, tt := range routetest.GatewayCases {
				r := get(t, c, "http://g.test"+tt.Path, tt.Header...)
				tt.Check(t, r.resp.StatusCode, r.resp.Header, r.body)
			}
			routetest.CheckLog(t, func() map[string]any { return lines.next(t) })
		})
	}
}
