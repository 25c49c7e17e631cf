package proxy_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agimo/agimo/proxy"
	"github.com/agimo/agimo/watch"
)

// orderScaler records the order of the scaler calls a wake makes.
type orderScaler struct {
	mu    sync.Mutex
	calls []string
	woke  chan struct{}
}

func (s *orderScaler) note(c string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
}

func (s *orderScaler) WakeUp(context.Context, watch.Workload, int32) (bool, error) {
	s.note("wake")
	close(s.woke)
	return true, nil
}

func (s *orderScaler) RecordActivity(context.Context, watch.Workload, time.Time, time.Duration) error {
	s.note("record")
	return nil
}

func (s *orderScaler) ScaleDownIfIdle(context.Context, watch.Workload, time.Duration, time.Time) (bool, error) {
	s.note("idle-check")
	return false, nil
}

// A wake of a service with idle_after records the activity in the Lease before
// it scales up: otherwise another Agimo replica, which has seen no request, finds
// the Lease as old as the time spent at zero and scales the woken workload back
// down while the requests that woke it are parked (found on a real node, issue 15:
// 503 after the park timeout). Without idle_after there is no Lease (nor RBAC for
// one): the wake alone.
func TestWakeRecordsActivityFirst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra string
		want  []string
	}{
		{"idle_after", "idle_after = '1h'", []string{"record", "wake"}},
		{"no-idle_after", "", []string{"wake"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := `timeout = '1s'
[[services]]
host = "web.test"
type = "deployment"
namespace = "apps"
name = "web"
service_name = "web"
service_port = 80
wake = true
` + tc.extra + "\n"
			sc := &orderScaler{woke: make(chan struct{})}
			h := startHarness(t, cfg, func(o *proxy.Options) { o.Scaler = sc })
			done := make(chan struct{})
			go func() {
				defer close(done)
				if resp, _, err := h.get("web.test", "/"); err == nil {
					resp.Body.Close() // 503 at the park timeout: no pod here
				}
			}()
			select {
			case <-sc.woke:
			case <-time.After(10 * time.Second):
				t.Fatal("no wake-up")
			}
			<-done
			sc.mu.Lock()
			defer sc.mu.Unlock()
			// The idler's checks (hourly here) are not part of the wake.
			got := slices.DeleteFunc(slices.Clone(sc.calls), func(c string) bool { return c == "idle-check" })
			if !slices.Equal(got, tc.want) {
				t.Errorf("scaler calls %v; want %v", got, tc.want)
			}
		})
	}
}
