package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// splitHost is one host split by path between two services (issue 12):
// /api to "api", every other path to "web"; and a host with one path
// only.
const splitHost = `
timeout = "10s"
[[services]]
host = "split.test"
paths = ["/api"]
type = "deployment"
namespace = "apps"
name = "api"
service_name = "api"
service_port = 80

[[services]]
host = "split.test"
type = "deployment"
namespace = "apps"
name = "web"
service_name = "web"
service_port = 80

[[services]]
host = "only.test"
paths = ["/v1/"]
type = "deployment"
namespace = "apps"
name = "v1"
service_name = "v1"
service_port = 80
`

// Over HTTP/1.1, a request is routed by its path as well as its host:
// while /api's service is cold, its request parks and "/", "/apix" (not
// under /api on a segment boundary) and an absolute-form target are
// served by the other service; the parked request is released to /api's
// own upstream once it is ready. A host whose paths do not match answers
// 404.
func TestRequestsRoutedByPath(t *testing.T) {
	h := startHarness(t, splitHost)
	answer := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name+" "+r.URL.Path) }
	}
	web, api := newUpstream(t, answer("web")), newUpstream(t, answer("api"))
	h.setEndpoints("apps", "web", true, web.addr())
	h.waitReadyService("split.test", "web")

	type result struct {
		body   string
		status int
		err    error
	}
	parked := make(chan result, 1)
	go func() {
		resp, body, err := h.get("split.test", "/api/x?q=1")
		if err != nil {
			parked <- result{err: err}
			return
		}
		parked <- result{body, resp.StatusCode, nil}
	}()
	h.waitMetric(`agimo_parked_requests{host="split.test"}`, 1)

	for _, path := range []string{"/", "/apix", "/web/api", "/API"} {
		resp, body, err := h.get("split.test", path)
		if err != nil {
			t.Fatal(err)
		}
		if want := "web " + path; resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s while /api is cold: got %d %q; want 200 %q", path, resp.StatusCode, body, want)
		}
	}
	raw, _ := h.rawExchange("GET http://split.test/apix HTTP/1.1\r\nHost: split.test\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(raw, "HTTP/1.1 200") || !strings.HasSuffix(raw, "web /apix") {
		t.Errorf("absolute-form /apix: got %q; want 200 from web", raw)
	}
	for _, path := range []string{"/", "/v2", "/v1x"} {
		resp, _, err := h.get("only.test", path)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET only.test%s: got %d; want 404 (no path of the host matches)", path, resp.StatusCode)
		}
	}
	if n := api.hits.Load(); n != 0 {
		t.Fatalf("api hits while cold = %d; want 0", n)
	}

	h.setEndpoints("apps", "api", true, api.addr())
	r := <-parked
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.status != 200 || r.body != "api /api/x" {
		t.Errorf("parked /api/x: got %d %q; want 200 %q", r.status, r.body, "api /api/x")
	}
	if n := api.hits.Load(); n != 1 {
		t.Errorf("api hits = %d; want 1", n)
	}
	h.waitMetric(`agimo_parked_requests{host="split.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="split.test"}`, 0)
	h.waitMetric(`agimo_requests_total{host="split.test"}`, 6)
}
