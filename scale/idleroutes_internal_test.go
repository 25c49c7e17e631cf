package scale

import (
	"slices"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/watch"
)

type anyReady struct{}

func (anyReady) Service(watch.Key) *watch.Service { return &watch.Service{} }

// TestIdleRoutes: the idler sums exactly the routes that send to a
// workload some route with idle_after sends to — those without
// idle_after included, others' left out — so a table where no route has
// idle_after costs a tick nothing (issue 13: 10,000 services).
func TestIdleRoutes(t *testing.T) {
	svc := func(host, workload, extra string) string {
		return "[[services]]\nhost = \"" + host + "\"\ntype = \"deploy\"\nnamespace = \"apps\"\nname = \"" + workload +
			"\"\nservice_name = \"" + workload + "\"\nservice_port = 80\n" + extra
	}
	idle := "idle_after = \"1m\"\n"
	for _, tc := range []struct {
		name string
		src  string
		want []string // hosts, in config order
	}{
		{"none idle", svc("a.test", "a", "") + svc("b.test", "b", ""), nil},
		{"one idle", svc("a.test", "a", idle) + svc("b.test", "b", ""), []string{"a.test"}},
		{"shared workload", svc("a.test", "w", "") + svc("b.test", "x", "") + svc("c.test", "w", idle), []string{"a.test", "c.test"}},
		{"all idle", svc("a.test", "a", idle) + svc("b.test", "b", idle), []string{"a.test", "b.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := conf.Parse(strings.NewReader(tc.src))
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
			var got []string
			for _, r := range idleRoutes(tb) {
				got = append(got, r.Host)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}
