package h2_test

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"
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
				if r.resp.StatusCode != tt.Status || (tt.Body != "" && r.body != tt.Body) {
					t.Errorf("%s: got %d %q; want %d %q", tt.Name, r.resp.StatusCode, r.body, tt.Status, tt.Body)
				}
				for i := 0; i+1 < len(tt.RespHeader); i += 2 {
					if got := r.resp.Header.Get(tt.RespHeader[i]); got != tt.RespHeader[i+1] {
						t.Errorf("%s: response %s = %q; want %q", tt.Name, tt.RespHeader[i], got, tt.RespHeader[i+1])
					}
				}
			}
			checkGatewayLog(t, func() map[string]any { return lines.next(t) })
		})
	}
}

// checkGatewayLog checks the access log's lines of routetest.GatewayCases, in any
// order (each case has its own path): each names the route picked, and
// the reason of Agimo's own answer.
func checkGatewayLog(t *testing.T, next func() map[string]any) {
	t.Helper()
	byPath := make(map[string]map[string]any)
	for range routetest.GatewayCases {
		line := next()
		path, _, _ := strings.Cut(fmt.Sprint(line["path"]), "?")
		byPath[path] = line
	}
	for _, tt := range routetest.GatewayCases {
		path, _, _ := strings.Cut(tt.Path, "?")
		line := byPath[path]
		if fmt.Sprint(line["route"]) != tt.Route || (tt.Reason != "" && fmt.Sprint(line["reason"]) != tt.Reason) {
			t.Errorf("%s: access log route %v, reason %v; want %q, %q", tt.Name, line["route"], line["reason"], tt.Route, tt.Reason)
		}
	}
}
