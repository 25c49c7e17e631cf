// Package routetest holds what the front ends' tests of route rules share
// (issue 12): a config of one host with the rules a Gateway API HTTPRoute
// makes, an upstream that echoes what it received, and the requests with
// the answers each front end must give, the same over HTTP/1.1 (package
// proxy) and HTTP/2 (package h2).
package routetest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/agimo/agimo/conf"
)

// GatewayHost is a config of one host with the rules a Gateway API HTTPRoute makes
// (issue 12): "/" to web, or to canary with a header X-Canary matching
// ^y; /old to rw, its path and Host rewritten and its headers edited both
// ways; /moved redirected, with no service. GatewayExtras adds what no
// TOML key sets.
const GatewayHost = `
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

func GatewayExtras(c *conf.Config) {
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

// EchoRequest answers with what the upstream received.
func EchoRequest(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Up-Secret", "s")
		w.Header().Set("X-Up", "u")
		fmt.Fprintf(w, "%s %s %s host=%s set=%s add=%s drop=%s xfh=%s", name, r.Method, r.RequestURI, r.Host,
			r.Header.Get("X-Set"), strings.Join(r.Header.Values("X-Add"), ","), r.Header.Get("X-Drop"), r.Header.Get("X-Forwarded-Host"))
	}
}

// Case is one request to GatewayHost and what it must get.
type Case struct {
	Name, Path string
	Header     []string // name, value, ...
	Status     int
	Body       string
	RespHeader []string // name, value ("" for absent), ...
	Route      string   // the access log's route and reason
	Reason     string
}

// GatewayCases are the requests to GatewayHost and what each must get,
// the same over HTTP/1.1 and HTTP/2.
var GatewayCases = []Case{
	{"plain", "/x?q=1", nil, 200, "web GET /x?q=1 host=g.test set= add= drop= xfh=g.test", []string{"X-Up-Secret", "s"}, "g.test", ""},
	{"header match", "/z", []string{"X-Canary", "yes"}, 200, "canary GET /z host=g.test set= add= drop= xfh=g.test", nil, "HTTPRoute apps/canary apps/canary:80", ""},
	{"header match fails", "/y", []string{"X-Canary", "no"}, 200, "web GET /y host=g.test set= add= drop= xfh=g.test", nil, "g.test", ""},
	{"rewrite and header edits", "/old/a?q=1", []string{"X-Drop", "d", "X-Add", "1", "X-Canary", "yes"}, 200,
		"rw GET /new/a?q=1 host=up.test set=1 add=1,2 drop= xfh=g.test", []string{"X-Resp", "r", "X-Up", "u", "X-Up-Secret", ""}, "HTTPRoute apps/rw apps/rw:80", ""},
	{"redirect", "/moved/b?z=1", nil, 301, "", []string{"Location", "https://new.test/here/b?z=1"}, "HTTPRoute apps/moved redirect", "redirect"},
}

// Check reports where a response (its status, header and body) differs
// from what c must get.
func (c Case) Check(t testing.TB, status int, header http.Header, body string) {
	t.Helper()
	if status != c.Status || (c.Body != "" && body != c.Body) {
		t.Errorf("%s: got %d %q; want %d %q", c.Name, status, body, c.Status, c.Body)
	}
	for i := 0; i+1 < len(c.RespHeader); i += 2 {
		if got := header.Get(c.RespHeader[i]); got != c.RespHeader[i+1] {
			t.Errorf("%s: response %s = %q; want %q", c.Name, c.RespHeader[i], got, c.RespHeader[i+1])
		}
	}
}

// CheckLog checks the access log's lines of GatewayCases, read with next,
// in any order (each case has its own path): each names the route picked,
// and the reason of Agimo's own answer.
func CheckLog(t testing.TB, next func() map[string]any) {
	t.Helper()
	byPath := make(map[string]map[string]any)
	for range GatewayCases {
		line := next()
		path, _, _ := strings.Cut(fmt.Sprint(line["path"]), "?")
		byPath[path] = line
	}
	for _, c := range GatewayCases {
		path, _, _ := strings.Cut(c.Path, "?")
		line := byPath[path]
		if fmt.Sprint(line["route"]) != c.Route || (c.Reason != "" && fmt.Sprint(line["reason"]) != c.Reason) {
			t.Errorf("%s: access log route %v, reason %v; want %q, %q", c.Name, line["route"], line["reason"], c.Route, c.Reason)
		}
	}
}
