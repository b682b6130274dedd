package alerting

import (
	"container/heap"
	"strings"
	"time"
)

// dueQueue holds the times at which something falls due for an alarm (a
// shelf's end, an escalation step or reminder, the feedback limit),
// earliest first, ties by alarm id and kind so that the order is the same
// on every run. Entries are not removed when what they stand for goes away
// (an alarm unshelved by hand, acknowledged): whoever pops one checks that
// the alarm is still due then. Owned by the Run goroutine.
type dueQueue struct{ h dueHeap }

// dueKind is what falls due: the op of a timer's event on its alarm, or
// dueFlood, a flood's window to look at again (id empty).
type dueKind = Op

// dueFlood is not an op of Next: the Manager handles it.
const dueFlood dueKind = numOps

type dueEntry struct {
	at   time.Time
	id   string
	kind dueKind
}

func (q *dueQueue) push(at time.Time, id string, kind dueKind) {
	heap.Push(&q.h, dueEntry{at, id, kind})
}

func (q *dueQueue) len() int { return len(q.h) }

// first is the earliest due time, if any.
func (q *dueQueue) first() (time.Time, bool) {
	if len(q.h) == 0 {
		return time.Time{}, false
	}
	return q.h[0].at, true
}

// popDue removes and returns the earliest entry if it is due by now.
func (q *dueQueue) popDue(now time.Time) (dueEntry, bool) {
	if len(q.h) == 0 || q.h[0].at.After(now) {
		return dueEntry{}, false
	}
	return heap.Pop(&q.h).(dueEntry), true
}

type dueHeap []dueEntry

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	if c := strings.Compare(h[i].id, h[j].id); c != 0 {
		return c < 0
	}
	return h[i].kind < h[j].kind
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
