package tunnel

import (
	"context"
	"net"
	"sync"
)

// Registry tracks the tunnels that are open, so that shutdown can close
// them: fasthttp's Shutdown neither waits for nor closes a connection it
// handed over by hijacking (issue 3).
type Registry struct {
	mu     sync.Mutex // guards open and closed
	open   map[*Tunnel]struct{}
	closed bool
	// ended counts tunnels between Open and End, so that Wait returns
	// only once each tunnel's goroutines are gone.
	ended sync.WaitGroup
}

// NewRegistry returns an empty, open Registry.
func NewRegistry() *Registry {
	return &Registry{open: make(map[*Tunnel]struct{})}
}

// Open registers a tunnel for client, a connection taken over from the
// HTTP server. It fails with ErrClosed once Close has been called, and
// then leaves client open for the caller to answer. The caller must call
// End on the returned Tunnel exactly once.
func (r *Registry) Open(client net.Conn) (*Tunnel, error) {
	t := newTunnel(r, client)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		t.cancel()
		return nil, ErrClosed
	}
	r.open[t] = struct{}{}
	r.ended.Add(1)
	return t, nil
}

// Len reports how many tunnels are open.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.open)
}

// Close refuses new tunnels, closes every open one with ErrClosed, and
// returns how many it closed. The tunnels' goroutines end soon after;
// Wait waits for them.
func (r *Registry) Close() int {
	r.mu.Lock()
	r.closed = true
	open := make([]*Tunnel, 0, len(r.open))
	for t := range r.open {
		open = append(open, t)
	}
	r.mu.Unlock()
	// Close outside the lock: a tunnel ending now calls remove.
	for _, t := range open {
		t.close(ErrClosed)
	}
	return len(open)
}

// Wait blocks until every tunnel has ended or ctx is done.
func (r *Registry) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		r.ended.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// The goroutine above ends with the last tunnel; tunnels are
		// closed by then, so that is soon.
		return ctx.Err()
	}
}

func (r *Registry) remove(t *Tunnel) {
	r.mu.Lock()
	delete(r.open, t)
	r.mu.Unlock()
	r.ended.Done()
}
