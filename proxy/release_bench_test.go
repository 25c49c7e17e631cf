package proxy_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkRelease measures, for 1,000 parked requests, the time from the
// readiness event (the EndpointSlice update sent to the API) to each
// request reaching the upstream: the median and the maximum (issue 2).
// The fake clientset stands in for the API server; the informer, the
// broadcast and the proxy are the real ones.
//
//	go test -run '^$' -bench Release -benchtime 5x ./proxy
func BenchmarkRelease(b *testing.B) {
	const parked = 1000
	h := startHarness(b, strings.Replace(oneService, `timeout = "2s"`, `timeout = "60s"`, 1))
	var mu sync.Mutex // guards arrivals
	var arrivals []time.Time
	up := newUpstream(b, func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		mu.Lock()
		arrivals = append(arrivals, now)
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	var medians, maxes []float64
	for b.Loop() {
		b.StopTimer()
		mu.Lock()
		arrivals = arrivals[:0]
		mu.Unlock()
		h.setEndpoints("apps", "app", false, up.addr())
		var wg sync.WaitGroup
		for range parked {
			wg.Go(func() {
				if resp, _, err := h.get("app.test", "/"); err != nil || resp.StatusCode != 200 {
					b.Errorf("request failed: %v %v", resp, err)
				}
			})
		}
		h.waitMetric(`agimo_parked_requests{host="app.test"}`, parked)
		b.StartTimer()
		event := time.Now()
		h.setEndpoints("apps", "app", true, up.addr())
		wg.Wait()
		b.StopTimer()
		mu.Lock()
		lat := make([]float64, len(arrivals))
		for i, a := range arrivals {
			lat[i] = float64(a.Sub(event).Microseconds()) / 1000
		}
		mu.Unlock()
		slices.Sort(lat)
		if len(lat) != parked {
			b.Fatalf("upstream saw %d requests; want %d", len(lat), parked)
		}
		medians = append(medians, lat[len(lat)/2])
		maxes = append(maxes, lat[len(lat)-1])
		b.StartTimer()
	}
	slices.Sort(medians)
	slices.Sort(maxes)
	b.ReportMetric(medians[len(medians)/2], "median-ms")
	b.ReportMetric(maxes[len(maxes)/2], "max-ms")
	b.ReportMetric(0, "ns/op")
}
