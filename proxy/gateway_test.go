package proxy_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/proxy"
	"github.com/agimo/agimo/route/routetest"
)

// TestGatewayRules: over HTTP/1.1, a header match, a URL rewrite with
// request and response header edits, and a redirect, through real
// listeners (the requests park until the services are ready).
func TestGatewayRules(t *testing.T) {
	al, lines := newAccessLog(t, accesslog.Options{})
	h := startHarnessExtras(t, routetest.GatewayHost, routetest.GatewayExtras, func(o *proxy.Options) { o.AccessLog = al })
	for _, name := range []string{"web", "canary", "rw"} {
		h.setEndpoints("apps", name, true, newUpstream(t, routetest.EchoRequest(name)).addr())
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range routetest.GatewayCases {
		req, err := http.NewRequest(http.MethodGet, "http://"+h.addr+tt.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "g.test"
		for i := 0; i+1 < len(tt.Header); i += 2 {
			req.Header.Set(tt.Header[i], tt.Header[i+1])
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.Name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", tt.Name, err)
		}
		tt.Check(t, resp.StatusCode, resp.Header, string(body))
	}
	routetest.CheckLog(t, func() map[string]any { return lines.next(t) })
}
