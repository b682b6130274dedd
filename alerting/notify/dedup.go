package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Store remembers what was delivered, by key: a notification's Key once
// it is done with, and each Message.ID once that message is delivered or
// refused. A durable consumer redelivers what it had not acknowledged when
// the centre stopped; with a Store on disk (FileStore) such a notification
// is recognised after the restart and only what it still owes is sent.
//
// Implementations are safe for concurrent use.
type Store interface {
	// Lookup returns when key was recorded, and whether it was.
	Lookup(key string) (time.Time, bool, error)
	// Record remembers key as done at t.
	Record(key string, t time.Time) error
	// Expire forgets every key recorded before cutoff and says how many.
	Expire(cutoff time.Time) (int, error)
}

// DefaultDedupTTL is how long a delivered key is remembered: the 7 days
// the centre remembers gateway replays for (SPEC §2), far longer than a
// durable consumer takes to redeliver what it had not acknowledged.
const DefaultDedupTTL = 7 * 24 * time.Hour

// DefaultMemStoreMax bounds a MemStore.
const DefaultMemStoreMax = 100_000

// MemStore is a Store in memory, bounded: past Max keys the oldest are
// forgotten. It forgets everything at a restart; use FileStore where a
// redelivery after a restart must not send twice.
type MemStore struct {
	max int

	mu   sync.Mutex
	at   map[string]time.Time
	fifo []memEntry // in the order recorded; fifo[head:] are live
	head int
}

type memEntry struct {
	key string
	at  time.Time
}

// NewMemStore returns an empty MemStore holding at most max keys
// (DefaultMemStoreMax when max ≤ 0).
func NewMemStore(max int) *MemStore {
	if max <= 0 {
		max = DefaultMemStoreMax
	}
	return &MemStore{max: max, at: make(map[string]time.Time)}
}

// Lookup implements Store.
func (s *MemStore) Lookup(key string) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[key]
	return t, ok, nil
}

// Record implements Store.
func (s *MemStore) Record(key string, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at[key] = t
	s.fifo = append(s.fifo, memEntry{key, t})
	for len(s.at) > s.max {
		s.pop()
	}
	return nil
}

// Expire implements Store. Keys go in the order they were recorded, which
// is the order of their times unless the clock stepped back; a key behind
// a younger one waits for it, which only keeps it a little longer.
func (s *MemStore) Expire(cutoff time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.at)
	for s.head < len(s.fifo) && s.fifo[s.head].at.Before(cutoff) {
		s.pop()
	}
	return n - len(s.at), nil
}

// Len returns how many keys are remembered.
func (s *MemStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

// pop forgets the oldest entry; one recorded again since keeps its newer
// time.
func (s *MemStore) pop() {
	e := s.fifo[s.head]
	s.fifo[s.head] = memEntry{}
	s.head++
	if t, ok := s.at[e.key]; ok && t.Equal(e.at) {
		delete(s.at, e.key)
	}
	if s.head > len(s.fifo)/2 {
		s.fifo = s.fifo[:copy(s.fifo, s.fifo[s.head:])]
		s.head = 0
	}
}

// memory is the dedup stage's and the retry stage's view of the Store: a
// key counts as delivered while it is younger than the TTL. A Store that
// fails is logged and taken as "not delivered": a notice sent twice is
// better than an alarm nobody hears of.
type memory struct {
	store Store
	ttl   time.Duration
	clock func() time.Time
	log   *slog.Logger
}

func (m *memory) done(key string) bool {
	at, ok, err := m.store.Lookup(key)
	if err != nil {
		m.log.Error("notify: dedup store lookup failed; delivering", "key", key, "err", err)
		return false
	}
	return ok && m.clock().Sub(at) < m.ttl
}

func (m *memory) record(key string) {
	if err := m.store.Record(key, m.clock()); err != nil {
		m.log.Error("notify: dedup store record failed; a redelivery would send again", "key", key, "err", err)
	}
}

// dedupStage drops a notification whose Key was done with before. It
// holds a Key while a delivery of it is under way: a second delivery of
// the same Key (a durable consumer redelivering after its ack wait) waits
// for the first and then finds it done, or takes over what the first left
// undelivered.
type dedupStage struct {
	mem *memory

	mu       sync.Mutex
	inflight map[string]chan struct{}
}

func newDedupStage(mem *memory) *dedupStage {
	return &dedupStage{mem: mem, inflight: make(map[string]chan struct{})}
}

func (s *dedupStage) Exec(ctx context.Context, d *delivery) (outcome, error) {
	key := d.N.Key
	for {
		s.mu.Lock()
		busy, ok := s.inflight[key]
		if !ok {
			break
		}
		s.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return outPending, ctx.Err()
		}
	}
	mine := make(chan struct{})
	s.inflight[key] = mine
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		delete(s.inflight, key)
		s.mu.Unlock()
		close(mine)
	}
	if s.mem.done(key) {
		release()
		return outDuplicate, nil
	}
	d.onFinish(func(o outcome, _ error) {
		// Done with: delivered, dropped by a later stage, or refused for
		// good. Not when the pipeline was cut short (outPending: the context
		// ended) or a message may still go through on a later try.
		if o != outPending && !d.gaveUp {
			s.mem.record(key)
		}
		release()
	})
	return outPending, nil
}
