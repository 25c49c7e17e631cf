package h2_test

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/route"
)

// gatewayHost is one host with the rules a Gateway API HTTPRoute makes
// (issue 12): "/" to web, or to canary with a header X-Canary matching
// ^y; /old to rw, its path and Host rewritten and its headers edited both
// ways; /moved redirected, with no service. gatewayExtras adds what no
// TOML key sets.
const gatewayHost = `
timeout = "10s"
[[services]]
host = "g.test"
type = "deployment"
namespace = "apps"
name = "web"
service_name = "web"
service_port = 80

[[services]]
host = "g.test"
type = "deployment"
namespace = "apps"
name = "canary"
service_name = "canary"
service_port = 80

[[services]]
host = "g.test"
paths = ["/old"]
type = "deployment"
namespace = "apps"
name = "rw"
service_name = "rw"
service_port = 80

[[services]]
host = "g.test"
paths = ["/moved"]
`

func gatewayExtras(c *conf.Config) {
	s := c.Services
	s[1].Source = "HTTPRoute apps/canary"
	s[1].Headers = []conf.ValueMatch{{Name: "x-canary", Value: "^y", Regex: true}}
	s[2].Source = "HTTPRoute apps/rw"
	s[2].Filters = &conf.Filters{
		Rewrite:         &conf.Rewrite{Hostname: "up.test", Path: &conf.PathModifier{ReplacePrefixMatch: "/new", Prefix: true}},
		RequestHeaders:  &conf.HeaderEdit{Set: []conf.Header{{Name: "X-Set", Value: "1"}}, Add: []conf.Header{{Name: "X-Add", Value: "2"}}, Remove: []string{"X-Drop"}},
		ResponseHeaders: &conf.HeaderEdit{Set: []conf.Header{{Name: "X-Resp", Value: "r"}}, Remove: []string{"X-Up-Secret"}},
	}
	s[3].Source = "HTTPRoute apps/moved"
	s[3].Filters = &conf.Filters{Redirect: &conf.Redirect{Scheme: "https", Hostname: "new.test", StatusCode: 301,
		Path: &conf.PathModifier{ReplacePrefixMatch: "/here", Prefix: true}}}
}

// echoRequest answers with what the upstream received.
func echoRequest(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Up-Secret", "s")
		w.Header().Set("X-Up", "u")
		fmt.Fprintf(w, "%s %s %s host=%s set=%s add=%s drop=%s xfh=%s", name, r.Method, r.RequestURI, r.Host,
			r.Header.Get("X-Set"), strings.Join(r.Header.Values("X-Add"), ","), r.Header.Get("X-Drop"), r.Header.Get("X-Forwarded-Host"))
	}
}

// gatewayCases are the requests to gatewayHost and what each must get,
// the same over HTTP/1.1 (proxy's TestGatewayRules) and HTTP/2.
var gatewayCases = []struct {
	name, path string
	header     []string // name, value, ...
	status     int
	body       string
	respHeader []string // name, value ("" for absent), ...
	route      string   // the access log's route and reason
	reason     string
}{
	{"plain", "/x?q=1", nil, 200, "web GET /x?q=1 host=g.test set= add= drop= xfh=g.test", []string{"X-Up-Secret", "s"}, "g.test", ""},
	{"header match", "/z", []string{"X-Canary", "yes"}, 200, "canary GET /z host=g.test set= add= drop= xfh=g.test", nil, "HTTPRoute apps/canary apps/canary:80", ""},
	{"header match fails", "/y", []string{"X-Canary", "no"}, 200, "web GET /y host=g.test set= add= drop= xfh=g.test", nil, "g.test", ""},
	{"rewrite and header edits", "/old/a?q=1", []string{"X-Drop", "d", "X-Add", "1", "X-Canary", "yes"}, 200,
		"rw GET /new/a?q=1 host=up.test set=1 add=1,2 drop= xfh=g.test", []string{"X-Resp", "r", "X-Up", "u", "X-Up-Secret", ""}, "HTTPRoute apps/rw apps/rw:80", ""},
	{"redirect", "/moved/b?z=1", nil, 301, "", []string{"Location", "https://new.test/here/b?z=1"}, "HTTPRoute apps/moved redirect", "redirect"},
}

// TestGatewayRules: over HTTP/2, the answers the HTTP/1.1 front end gives
// (proxy's TestGatewayRules) to a header match, a URL rewrite with
// request and response header edits, and a redirect, with the rewritten
// route's upstream over HTTP/1.1 and over h2c (the front end's two ways
// to forward).
func TestGatewayRules(t *testing.T) {
	for _, appProto := range []string{"", route.AppProtocolH2C} {
		t.Run("rw upstream "+cmp.Or(appProto, "http/1.1"), func(t *testing.T) {
			al, lines := newAccessLog(t)
			h := startHarnessWith(t, gatewayHost, harnessOpts{extras: gatewayExtras, accessLog: al})
			for _, name := range []string{"web", "canary"} {
				h.setEndpoints("apps", name, "", true, newH1UpstreamFunc(t, echoRequest(name)).addr())
			}
			rw := newH1UpstreamFunc(t, echoRequest("rw")).addr()
			if appProto != "" {
				rw = startH2CApp(t, echoRequest("rw"))
			}
			h.setEndpoints("apps", "rw", appProto, true, rw)
			c := h2cClient(t, h.addr)
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			for _, tt := range gatewayCases {
				r := get(t, c, "http://g.test"+tt.path, tt.header...)
				if r.resp.StatusCode != tt.status || (tt.body != "" && r.body != tt.body) {
					t.Errorf("%s: got %d %q; want %d %q", tt.name, r.resp.StatusCode, r.body, tt.status, tt.body)
				}
				for i := 0; i+1 < len(tt.respHeader); i += 2 {
					if got := r.resp.Header.Get(tt.respHeader[i]); got != tt.respHeader[i+1] {
						t.Errorf("%s: response %s = %q; want %q", tt.name, tt.respHeader[i], got, tt.respHeader[i+1])
					}
				}
			}
			checkGatewayLog(t, func() map[string]any { return lines.next(t) })
		})
	}
}

// checkGatewayLog checks the access log's lines of gatewayCases, in any
// order (each case has its own path): each names the route picked, and
// the reason of Agimo's own answer.
func checkGatewayLog(t *testing.T, next func() map[string]any) {
	t.Helper()
	byPath := make(map[string]map[string]any)
	for range gatewayCases {
		line := next()
		path, _, _ := strings.Cut(fmt.Sprint(line["path"]), "?")
		byPath[path] = line
	}
	for _, tt := range gatewayCases {
		path, _, _ := strings.Cut(tt.path, "?")
		line := byPath[path]
		if fmt.Sprint(line["route"]) != tt.route || (tt.reason != "" && fmt.Sprint(line["reason"]) != tt.reason) {
			t.Errorf("%s: access log route %v, reason %v; want %q, %q", tt.name, line["route"], line["reason"], tt.route, tt.reason)
		}
	}
}
