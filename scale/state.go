package scale

import (
	"time"

	"github.com/agimo/agimo/watch"
)

// WorkloadState is what this replica knows of a workload's wake and idle
// life, for the status page. Other replicas' wakes and activity are not
// in it (the Lease holds the shared activity).
type WorkloadState struct {
	// LastWake is when this replica last raised the workload from zero;
	// WakeError the last wake-up's error, "" if it succeeded.
	LastWake  time.Time
	WakeError string
	// IdleAfter is the longest idle_after of the routes sending to it (0:
	// never scaled down); IdleSince is when the idler last saw activity
	// (or first saw the workload): it is scaled down about IdleAfter after,
	// unless another replica records activity meanwhile.
	IdleAfter time.Duration
	IdleSince time.Time
	// LastScaleDown is when this replica last scaled it to zero as idle.
	LastScaleDown time.Time
}

// Workload returns what the policy knows of w (zero if nothing).
func (p *Policy) Workload(w watch.Workload) WorkloadState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.works[w]
}

// note updates w's state under the lock.
func (p *Policy) note(w watch.Workload, f func(*WorkloadState)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.works == nil {
		p.works = make(map[watch.Workload]WorkloadState)
	}
	s := p.works[w]
	f(&s)
	p.works[w] = s
}
