package ingest

import (
	"sort"
)

// seen remembers which (gateway, boot, seq) the READINGS stream holds, so
// that a message delivered twice (a lost PUBACK, a gateway that gave up
// waiting and republished, a store-and-forward replay of what already
// arrived) is stored once.
//
// Per (gateway, boot) it keeps the seqs seen as sorted, disjoint runs
// [lo, hi]. The first run's hi is the watermark (every seq up to it is
// seen); the runs above it are the seen seqs beyond, stored as runs rather
// than one entry per seq. Seqs of one boot arrive out of order — live
// messages interleave with replayed older ones — and the runs merge as a
// replay catches up with the live edge, so in the usual case a boot is one
// run. A seq that never arrives (a message the gateway's full store dropped,
// or one whose content was rejected before its seq could be read) leaves a
// gap that costs one run for as long as the boot is remembered, rather than
// a set entry for every later seq.
//
// seen is owned by one goroutine: the committer, and before it starts, the
// rebuild in Start. It has no lock.
type seen struct {
	// boots is indexed by gateway index; a boot string is the key.
	boots []map[string]*bootSeen
	// maxRuns bounds the runs of one boot against a gateway whose seqs
	// are sparse on purpose or by a bug; past it the lowest run is
	// forgotten, which can only let an old message be stored twice, never
	// drop a new one.
	maxRuns int
	// forgotten counts runs dropped for maxRuns.
	forgotten uint64
}

type bootSeen struct {
	runs []run
	// last is the newest receive time of the boot's messages, Unix ms: the
	// boot is forgotten when it falls behind the replay horizon.
	last int64
}

type run struct{ lo, hi uint64 }

const defaultMaxRuns = 1 << 16

func newSeen(gateways int) *seen {
	s := &seen{boots: make([]map[string]*bootSeen, gateways), maxRuns: defaultMaxRuns}
	for i := range s.boots {
		s.boots[i] = make(map[string]*bootSeen)
	}
	return s
}

// has reports whether (gw, boot, seq) was recorded.
func (s *seen) has(gw int32, boot string, seq uint64) bool {
	b := s.boots[gw][boot]
	if b == nil {
		return false
	}
	i := b.search(seq)
	return i < len(b.runs) && b.runs[i].lo <= seq
}

// search returns the first run whose hi is at least seq.
func (b *bootSeen) search(seq uint64) int {
	return sort.Search(len(b.runs), func(i int) bool { return b.runs[i].hi >= seq })
}

// add records (gw, boot, seq), received at Unix ms at. The boot string is
// kept, so it must not alias a reused buffer.
func (s *seen) add(gw int32, boot string, seq uint64, at int64) {
	m := s.boots[gw]
	b := m[boot]
	if b == nil {
		b = &bootSeen{}
		m[boot] = b
	}
	s.record(b, seq, at)
}

// addBytes is add for a boot read from a stored batch: the boot is copied
// only the first time it is met.
func (s *seen) addBytes(gw int32, boot []byte, seq uint64, at int64) {
	m := s.boots[gw]
	b := m[string(boot)]
	if b == nil {
		b = &bootSeen{}
		m[string(boot)] = b
	}
	s.record(b, seq, at)
}

func (s *seen) record(b *bootSeen, seq uint64, at int64) {
	if at > b.last {
		b.last = at
	}
	b.insert(seq)
	if len(b.runs) > s.maxRuns {
		b.runs = b.runs[:copy(b.runs, b.runs[1:])]
		s.forgotten++
	}
}

func (b *bootSeen) insert(seq uint64) {
	// The first run that seq touches or lies below: hi ≥ seq−1.
	i := 0
	if seq > 0 {
		i = b.search(seq - 1)
	}
	switch {
	case i == len(b.runs):
		b.runs = append(b.runs, run{seq, seq})
	case b.runs[i].lo <= seq && seq <= b.runs[i].hi:
		// Already there.
	case b.runs[i].hi+1 == seq:
		b.runs[i].hi = seq
		if i+1 < len(b.runs) && b.runs[i+1].lo == seq+1 {
			b.runs[i].hi = b.runs[i+1].hi
			b.runs = append(b.runs[:i+1], b.runs[i+2:]...)
		}
	case b.runs[i].lo == seq+1:
		// The run below ends before seq−1 (search), so nothing merges.
		b.runs[i].lo = seq
	default:
		b.runs = append(b.runs, run{})
		copy(b.runs[i+1:], b.runs[i:])
		b.runs[i] = run{seq, seq}
	}
}

// prune forgets the boots whose newest message was received before cutoff
// (Unix ms): a gateway replays nothing older than the horizon (the decoder
// rejects such readings as stale, and the stream has expired them).
func (s *seen) prune(cutoff int64) (boots int) {
	for _, m := range s.boots {
		for boot, b := range m {
			if b.last < cutoff {
				delete(m, boot)
				continue
			}
			boots++
		}
	}
	return boots
}

// size returns how many boots and runs are remembered.
func (s *seen) size() (boots, runs int) {
	for _, m := range s.boots {
		boots += len(m)
		for _, b := range m {
			runs += len(b.runs)
		}
	}
	return boots, runs
}
