package h2_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agimo/agimo/watch"
)

// wakeScaler records the workloads it is asked to wake.
type wakeScaler struct {
	mu    sync.Mutex
	woken []string
	wake  chan struct{} // one send per WakeUp
}

func (s *wakeScaler) WakeUp(_ context.Context, w watch.Workload, _ int32) (bool, error) {
	s.mu.Lock()
	s.woken = append(s.woken, w.Namespace+"/"+w.Name)
	s.mu.Unlock()
	s.wake <- struct{}{}
	return true, nil
}

func (s *wakeScaler) RecordActivity(context.Context, watch.Workload, time.Time, time.Duration) error {
	return nil
}

func (s *wakeScaler) ScaleDownIfIdle(context.Context, watch.Workload, time.Duration, time.Time) (bool, error) {
	return false, nil
}

// A stream to a cold service with wake = true wakes its workload, as an
// HTTP/1.1 request does, and so does a browser shown the waiting page.
func TestColdStreamWakesWorkload(t *testing.T) {
	cfg := strings.Replace(answerServices, "waiting_page = true", "waiting_page = true\nwake = true", 1)
	sc := &wakeScaler{wake: make(chan struct{}, 4)}
	h := startHarnessWith(t, cfg, harnessOpts{scaler: sc})
	c := h2cClient(t, h.addr)

	r := get(t, c, "http://page.test/", "Accept", "text/html")
	if r.resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("navigation: got %d; want the waiting page's 503", r.resp.StatusCode)
	}
	<-sc.wake

	req, _ := http.NewRequest(http.MethodGet, "http://page.test/api", nil)
	done := send(c, req)
	h.waitMetric(`agimo_parked_requests{host="page.test"}`, 1)
	up := newH1Upstream(t)
	h.setEndpoints("apps", "page", "", true, up.addr())
	if r := <-done; r.err != nil || r.resp.StatusCode != http.StatusCreated {
		t.Fatalf("parked stream: got %v, %v; want 201", r.resp, r.err)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if len(sc.woken) == 0 || sc.woken[0] != "apps/page" {
		t.Errorf("woken = %q; want apps/page", sc.woken)
	}
}
