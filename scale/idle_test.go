package scale_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/scale"
	"github.com/agimo/agimo/watch"
)

type anyReady struct{}

func (anyReady) Service(watch.Key) *watch.Service { return &watch.Service{} }

// callScaler records the idler's calls, "record NAME" or "down NAME".
type callScaler struct {
	mu    sync.Mutex
	calls []string
	seen  chan string
}

func (s *callScaler) note(c string) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	select {
	case s.seen <- c:
	default:
	}
}

func (s *callScaler) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func (s *callScaler) WakeUp(context.Context, watch.Workload, int32) (bool, error) { return false, nil }

func (s *callScaler) RecordActivity(_ context.Context, w watch.Workload, _ time.Time, _ time.Duration) error {
	s.note("record " + w.Name)
	return nil
}

func (s *callScaler) ScaleDownIfIdle(_ context.Context, w watch.Workload, _ time.Duration, _ time.Time) (bool, error) {
	s.note("down " + w.Name)
	return false, nil
}

func service(host, workload, paths, extra string) string {
	return "[[services]]\nhost = \"" + host + "\"\ntype = \"deploy\"\nnamespace = \"apps\"\nname = \"" + workload +
		"\"\nservice_name = \"" + workload + "-" + strings.ReplaceAll(host, ".", "-") + "\"\nservice_port = 80\n" + paths + extra
}

// The idler keys its state by workload and counts each route's own
// requests: two entries of one host that send to different workloads
// idle apart (one busy route does not keep the other's workload up, nor
// the other way round), and a route without idle_after that sends to a
// workload keeps it up while it is busy.
func TestIdlePerWorkload(t *testing.T) {
	src := service("a.ex.test", "api", "paths = [\"/api\"]\n", "idle_after = \"300ms\"\n") +
		service("a.ex.test", "web", "", "idle_after = \"300ms\"\n") +
		service("b.ex.test", "shared", "", "idle_after = \"300ms\"\n") +
		service("c.ex.test", "shared", "", "")
	cfg, err := conf.Parse(strings.NewReader(src))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	tb, err := route.Build(cfg, anyReady{}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	api, _ := tb.Lookup([]byte("a.ex.test"), []byte("/api/x"), nil)
	c, _ := tb.Lookup([]byte("c.ex.test"), []byte("/"), nil)
	// Busy for the whole test: the host a.ex.test's series say active too.
	api.CountRequest()
	c.CountRequest()
	defer api.EndRequest()
	defer c.EndRequest()

	sc := &callScaler{seen: make(chan string, 64)}
	stop := make(chan struct{})
	p := scale.New(sc, zerolog.Nop(), stop)
	done := make(chan struct{})
	go func() { defer close(done); p.Idle(stop, func() *route.Table { return tb }) }()
	var once sync.Once
	end := func() { once.Do(func() { close(stop); <-done }) }
	defer end()
	want := map[string]bool{"record api": false, "down web": false, "record shared": false}
	timeout := time.After(10 * time.Second) // a bound on a hang, not a timing assertion
	for left := len(want); left > 0; {
		var c string
		select {
		case c = <-sc.seen:
		case <-timeout:
			t.Fatalf("idler calls so far %q; want each of %v", sc.snapshot(), want)
		}
		if seen, ok := want[c]; ok && !seen {
			want[c] = true
			left--
		}
	}
	end()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, c := range sc.calls {
		switch c {
		case "down api", "record web", "down shared":
			t.Errorf("idler call %q; want none (calls %q)", c, sc.calls)
		}
	}
}
