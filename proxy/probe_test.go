package proxy_test

import (
	"testing"
	"time"
)

// probe_paths is compared byte for byte with the path of the target as
// sent, before any '?': a target that only decodes or normalises to a
// probe path is a normal request, counted and forwarded as sent, since
// that is what the app serves (issue 10 item 4).
func TestProbePathsMatchRawPath(t *testing.T) {
	h, u := advSetup(t, coldFeatures) // probe_paths = ["/healthz"]
	const (
		requests = `agimo_requests_total{host="app.test"}`
		probes   = `agimo_probe_requests_total{host="app.test"}`
	)
	for _, tc := range []struct {
		target string
		probe  bool
		// forwarded is the target the upstream must see ("" for target).
		forwarded string
	}{
		{target: "/healthz", probe: true},
		{target: "/healthz?x=1", probe: true},
		{target: "http://app.test/healthz", probe: true, forwarded: "/healthz"},
		{target: "http://app.test/healthz?real=1", probe: true, forwarded: "/healthz?real=1"},
		// Attacks: each names /healthz only once decoded or normalised.
		{target: "/%68ealthz"},
		{target: "//healthz"},
		{target: "/x/../healthz?real=1"},
		{target: "/api/a/..%2F..%2Fhealthz"},
		{target: "/./healthz"},
		{target: "http://app.test//healthz", forwarded: "//healthz"},
		// Near misses.
		{target: "/healthz/"},
		{target: "/HEALTHZ"},
		{target: "/healthz%3Fx"},
		{target: "/healthz;x"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			u.reset()
			req0, probe0 := h.metric(requests), h.metric(probes)
			res := advSend(t, h.addr, "GET "+tc.target+" HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 2*time.Second)
			u.settle(10 * time.Millisecond)
			if len(res.Responses) != 1 || res.Responses[0].Status != 200 || res.Responses[0].Body != "ok" {
				t.Fatalf("got %v; want the upstream's 200", res)
			}
			reqs, errs := u.requests()
			want := tc.forwarded
			if want == "" {
				want = tc.target
			}
			if len(reqs) != 1 || len(errs) != 0 || reqs[0].Target != want {
				t.Errorf("upstream got %d requests (errors %v)%s; want one for %q", len(reqs), errs, u.dump(), want)
			}
			dReq, dProbe := h.metric(requests)-req0, h.metric(probes)-probe0
			if tc.probe && (dReq != 0 || dProbe != 1) {
				t.Errorf("requests_total +%v, probe_requests_total +%v; want +0, +1 (a probe)", dReq, dProbe)
			}
			if !tc.probe && (dReq != 1 || dProbe != 0) {
				t.Errorf("requests_total +%v, probe_requests_total +%v; want +1, +0 (a normal request)", dReq, dProbe)
			}
		})
	}
}
