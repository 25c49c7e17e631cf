package proxy

import (
	"context"
	"fmt"
	"reflect"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/watch"
)

// KeyUpdater is the part of watch.Watcher a reload needs.
type KeyUpdater interface {
	Update(ctx context.Context, keys []watch.Key) error
}

// Reload switches the proxy to cfg (already validated) without dropping a
// request (issue 7): readiness starts following the new services first,
// then the routing table is swapped in one step. Routes whose service is
// unchanged carry over as they are, with their parked requests, counters
// and learned cold starts; requests parked on a removed route keep
// waiting on it until released or timed out. Listener settings (limits,
// header timeout) take effect at the next restart.
func (p *Proxy) Reload(ctx context.Context, cfg *conf.Config, u KeyUpdater) error {
	if err := u.Update(ctx, Keys(cfg)); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	t, err := p.buildTable(cfg)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	old := p.routes.Load()
	for host, r := range t.byHost {
		if prev := old.byHost[host]; prev != nil && reflect.DeepEqual(prev.svc, r.svc) {
			t.byHost[host] = prev
		}
	}
	p.routes.Store(t)
	p.log.Info().Int("services", len(t.byHost)).Msg("config reloaded")
	return nil
}
