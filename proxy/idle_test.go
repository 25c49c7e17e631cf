package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agimo/agimo/proxy"
	"github.com/agimo/agimo/watch"
)

// hungScaler is an API server that never answers: every call blocks until
// its context ends, and reports how it ended.
type hungScaler struct {
	entered chan string
	mu      sync.Mutex
	ended   []error // ctx.Err() of every call that returned
	open    int     // calls not returned yet
}

func (s *hungScaler) block(ctx context.Context, w watch.Workload) error {
	s.mu.Lock()
	s.open++
	s.mu.Unlock()
	select {
	case s.entered <- w.Name:
	default:
	}
	<-ctx.Done()
	s.mu.Lock()
	s.open--
	s.ended = append(s.ended, ctx.Err())
	s.mu.Unlock()
	return ctx.Err()
}

func (s *hungScaler) WakeUp(ctx context.Context, w watch.Workload, _ int32) (bool, error) {
	return false, s.block(ctx, w)
}

func (s *hungScaler) RecordActivity(ctx context.Context, w watch.Workload, _ time.Time, _ time.Duration) error {
	return s.block(ctx, w)
}

func (s *hungScaler) ScaleDownIfIdle(ctx context.Context, w watch.Workload, _ time.Duration, _ time.Time) (bool, error) {
	return false, s.block(ctx, w)
}

// With the API server hung, the idle scale-down loop's calls are ended by
// Shutdown, not by their own timeout, one host after another (issue 10,
// item 14): Shutdown returns within its context, and no call is left
// running after it.
func TestIdlerStopsWithHungAPI(t *testing.T) {
	var cfg strings.Builder
	for _, n := range []string{"a", "b", "c"} {
		fmt.Fprintf(&cfg, `
[[services]]
host = "%[1]s.test"
type = "deploy"
namespace = "apps"
name = "%[1]s"
service_name = "%[1]s"
service_port = 80
idle_after = '3s'
`, n)
	}
	sc := &hungScaler{entered: make(chan string, 3)}
	h := startHarness(t, cfg.String(), func(o *proxy.Options) { o.Scaler = sc })
	// All three hosts are checked at once: none waits for another's call.
	for range 3 {
		select {
		case <-sc.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the idler made no call to the scaler")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := h.proxy.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.open != 0 {
		t.Errorf("%d scaler calls still running after Shutdown returned; want 0", sc.open)
	}
	for i, err := range sc.ended {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("call %d ended with %v; want context.Canceled (ended by Shutdown)", i, err)
		}
	}
}
