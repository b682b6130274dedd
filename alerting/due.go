package alerting

import (
	"container/heap"
	"strings"
	"time"
)

// dueQueue holds the times at which something falls due for an alarm
// (today a shelf's end), earliest first, ties by alarm id so that the
// order is the same on every run. Entries are not removed when what they
// stand for goes away (an alarm unshelved by hand): whoever pops one
// checks that it still holds. Owned by the Run goroutine.
type dueQueue struct{ h dueHeap }

type dueEntry struct {
	at time.Time
	id string
}

func (q *dueQueue) push(at time.Time, id string) { heap.Push(&q.h, dueEntry{at, id}) }

// first is the earliest due time, if any.
func (q *dueQueue) first() (time.Time, bool) {
	if len(q.h) == 0 {
		return time.Time{}, false
	}
	return q.h[0].at, true
}

// popDue removes and returns the earliest entry if it is due by now.
func (q *dueQueue) popDue(now time.Time) (time.Time, string, bool) {
	if len(q.h) == 0 || q.h[0].at.After(now) {
		return time.Time{}, "", false
	}
	e := heap.Pop(&q.h).(dueEntry)
	return e.at, e.id, true
}

type dueHeap []dueEntry

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return strings.Compare(h[i].id, h[j].id) < 0
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
