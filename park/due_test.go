package park

import (
	"container/heap"
	"testing"
	"time"
)

// The loop's heap yields entries by deadline whatever the order of Add
// and of removals (released or gone entries leave from its middle).
func TestDueHeapOrder(t *testing.T) {
	base := time.Now()
	var h dueHeap
	es := make([]*Entry, 8)
	for i, off := range []int{5, 1, 7, 3, 0, 6, 2, 4} {
		es[i] = &Entry{deadline: base.Add(time.Duration(off) * time.Second)}
		heap.Push(&h, es[i])
	}
	heap.Remove(&h, es[0].due) // 5 s
	heap.Remove(&h, es[4].due) // 0 s
	var got []time.Duration
	for h.Len() > 0 {
		e := heap.Pop(&h).(*Entry)
		if e.due != -1 {
			t.Errorf("popped entry's index = %d; want -1", e.due)
		}
		got = append(got, e.deadline.Sub(base)/time.Second)
	}
	want := []time.Duration{1, 2, 3, 4, 6, 7}
	if len(got) != len(want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v; want %v", got, want)
		}
	}
}

func TestWaitMillis(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0},
		{0, 0},
		// Rounded up: never woken before the deadline.
		{time.Microsecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{2 * time.Second, 2000},
		{1 << 62, 1<<31 - 1},
	} {
		if got := waitMillis(tc.d); got != tc.want {
			t.Errorf("waitMillis(%v) = %d; want %d", tc.d, got, tc.want)
		}
	}
}
