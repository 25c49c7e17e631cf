package park

import (
	"math"
	"time"
)

// dueHeap orders parked entries by deadline, for the lot's loop to answer
// each at its deadline: one epoll_wait timeout for all of them, instead of
// a runtime timer and its callback per parked request (issue 13: memory
// per parked request). It implements container/heap.Interface; l.mu
// guards it.
type dueHeap []*Entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].due, h[j].due = i, j
}

func (h *dueHeap) Push(x any) {
	e := x.(*Entry)
	e.due = len(*h)
	*h = append(*h, e)
}

func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.due = -1
	return e
}

// waitMillis is epoll_wait's timeout for a wait of d: the milliseconds,
// rounded up so that the loop wakes at or after a deadline, never
// spinning just before it.
func waitMillis(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(min((d+time.Millisecond-1)/time.Millisecond, math.MaxInt32))
}
