package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
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
		if resp.StatusCode != tt.Status || (tt.Body != "" && string(body) != tt.Body) {
			t.Errorf("%s: got %d %q; want %d %q", tt.Name, resp.StatusCode, body, tt.Status, tt.Body)
		}
		for i := 0; i+1 < len(tt.RespHeader); i += 2 {
			if got := resp.Header.Get(tt.RespHeader[i]); got != tt.RespHeader[i+1] {
				t.Errorf("%s: response %s = %q; want %q", tt.Name, tt.RespHeader[i], got, tt.RespHeader[i+1])
			}
		}
	}
	checkGatewayLog(t, func() map[string]any { return lines.next(t) })
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
