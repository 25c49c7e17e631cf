package h2_test

import (
	"net/http"
	"testing"
)

// splitHost is one host split by path between two services (issue 12):
// /api to "api", every other path to "web".
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
`

// Over HTTP/2, a stream is routed by its :path as well as its :authority:
// while /api's service is cold, its stream parks and "/" and "/apix" (not
// under /api on a segment boundary) are served by the other service; the
// parked stream is released to /api's own upstream once it is ready.
func TestStreamsRoutedByPath(t *testing.T) {
	h := startHarness(t, splitHost)
	web, api := newH1Upstream(t), newH1Upstream(t)
	h.setEndpoints("apps", "web", "", true, web.addr())
	h.waitReadyAt("split.test", "/")
	c := h2cClient(t, h.addr)

	req, err := http.NewRequest(http.MethodGet, "http://split.test/api/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	parked := send(c, req)
	h.waitMetric(`agimo_parked_requests{host="split.test"}`, 1)

	for _, path := range []string{"/", "/apix", "/web/api"} {
		if r := get(t, c, "http://split.test"+path); r.resp.StatusCode != http.StatusCreated {
			t.Errorf("GET %s while /api is cold: got %d; want 201 from web", path, r.resp.StatusCode)
		}
		if _, ok := web.byPath.Load(path); !ok {
			t.Errorf("GET %s did not reach web", path)
		}
	}

	h.setEndpoints("apps", "api", "", true, api.addr())
	if r := <-parked; r.err != nil || r.resp.StatusCode != http.StatusCreated {
		t.Fatalf("parked /api/x: got %v, %v; want 201", r.resp, r.err)
	}
	if _, ok := api.byPath.Load("/api/x"); !ok {
		t.Errorf("/api/x did not reach api")
	}
	if _, ok := web.byPath.Load("/api/x"); ok {
		t.Errorf("/api/x reached web; want api only")
	}
	if n := api.hits.Load(); n != 1 {
		t.Errorf("api hits = %d; want 1", n)
	}
	h.waitMetric(`agimo_requests_total{host="split.test"}`, 4)
	h.waitMetric(`agimo_active_requests{host="split.test"}`, 0)
}
