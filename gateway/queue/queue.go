// Package queue is the gateway's store-and-forward queue: a durable FIFO of
// telemetry messages that survives a restart and kill -9, so a reading polled
// while the uplink is down is never lost (issue #4, SPEC §2). It also owns the
// per-boot telemetry seq counter, because SPEC §2 wants a seq assigned and
// kept on disk when a message is created, not when it is sent.
//
// The store is bbolt (go.etcd.io/bbolt): one file, a copy-on-write B+tree
// that fsyncs every write transaction at commit, so whatever a method wrote
// is on disk when it returns and a crash leaves the last committed state.
//
// # On-disk layout
//
// All integers are big-endian, so bbolt's byte order is numeric order.
//
//	bucket "msgs"   key: uint64 queue seq (Message.Seq), from the bucket's own
//	                bbolt sequence, so it rises and is never reused, even
//	                after the queue empties or the process restarts.
//	                value: one record (see below).
//	bucket "boots"  key: the boot id (bytes of the string).
//	                value: uint64 last telemetry seq handed out for that boot,
//	                then int64 Unix nanoseconds of its last use. Boots unused
//	                for longer than MaxAge are deleted on Open: nothing of
//	                theirs can still be queued, and the centre forgets them
//	                after the same 7 days.
//	bucket "meta"   key "dropped": uint64 messages dropped for size or age.
//
// A record is
//
//	[0]      format version, 1
//	[1:9]    uint64 MsgSeq, the telemetry seq
//	[9:17]   int64 Created, Unix nanoseconds
//	[17]     n, the length of Boot (at most 255)
//	[18:18+n] Boot
//	[18+n:]  Payload, opaque to the queue
//
// A message's size, for MaxBytes, is its key plus its record (see size);
// bbolt's page overhead is not counted, and the file does not shrink when
// messages go (bbolt reuses the freed pages).
//
// # Bounds
//
// Append drops the oldest messages, and counts them in Dropped, while the
// queue is above MaxBytes or its oldest message is older than MaxAge; Open
// drops aged messages too. Age is judged at the head only: a message is
// kept while an older-keyed one ahead of it is still young (the gateway's
// clock may step back without NTP), so the queue stays a FIFO.
//
// A Queue is safe for concurrent use.
package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	// DefaultMaxBytes and DefaultMaxAge are issue #4's bounds: 1 GiB or
	// 7 days, whichever comes first.
	DefaultMaxBytes = 1 << 30
	DefaultMaxAge   = 7 * 24 * time.Hour

	recordVersion = 1
	headerLen     = 18
	keyLen        = 8
	maxBootLen    = 255
)

var (
	bucketMsgs  = []byte("msgs")
	bucketBoots = []byte("boots")
	bucketMeta  = []byte("meta")
	keyDropped  = []byte("dropped")
)

var (
	// ErrTooLarge is returned by Append for a message that alone exceeds
	// MaxBytes: storing it would mean dropping it (and everything else).
	ErrTooLarge = errors.New("queue: message larger than MaxBytes")
	// ErrCorrupt is returned when a stored record cannot be decoded.
	ErrCorrupt = errors.New("queue: corrupt record")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("queue: closed")
)

// Options configures Open. Zero fields get defaults.
type Options struct {
	Path     string        // the bbolt file (required)
	MaxBytes int64         // default 1 GiB: beyond it the oldest messages are dropped
	MaxAge   time.Duration // default 7 days: older messages are dropped
	Clock    func() time.Time
}

// Message is one queued telemetry message.
type Message struct {
	Seq     uint64    // the queue's own key, increasing, never reused; set by Append
	Boot    string    // the boot of the gateway process that created it
	MsgSeq  uint64    // the telemetry seq assigned at creation (SPEC §2)
	Created time.Time // set to Clock() by Append when zero
	Payload []byte    // the readings, encoded by the caller
}

// Queue is a durable FIFO of messages in one bbolt file.
type Queue struct {
	o  Options
	db *bolt.DB

	// mu guards the fields below, which mirror what is on disk so the
	// gauges (Len, Bytes, OldestAge, Dropped) never touch the file. They
	// change only after the transaction that changed the disk committed.
	mu      sync.Mutex
	closed  bool
	n       int
	bytes   int64
	oldest  time.Time // Created of the head; zero when empty
	dropped uint64
}

// Open opens (or creates) the queue file, drops messages older than MaxAge
// and boots unused for longer, and loads the counters.
func Open(o Options) (*Queue, error) {
	if o.Path == "" {
		return nil, errors.New("queue: Options.Path is required")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	// bbolt waits forever for the file lock by default; a second gateway
	// on the same file should fail, not hang.
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", o.Path, err)
	}
	q := &Queue{o: o, db: db}
	if err := q.load(); err != nil {
		db.Close()
		return nil, err
	}
	return q, nil
}

// load creates the buckets, expires what is too old and counts the rest,
// in one transaction.
func (q *Queue) load() error {
	now := q.o.Clock()
	var st state
	err := q.db.Update(func(tx *bolt.Tx) error {
		msgs, err := tx.CreateBucketIfNotExists(bucketMsgs)
		if err != nil {
			return err
		}
		boots, err := tx.CreateBucketIfNotExists(bucketBoots)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		st.dropped = getUint(meta.Get(keyDropped))
		c := msgs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) < headerLen {
				return fmt.Errorf("%w: key %x", ErrCorrupt, k)
			}
			st.n++
			st.bytes += int64(len(k) + len(v))
		}
		if err := q.enforce(msgs, meta, &st, now); err != nil {
			return err
		}
		return pruneBoots(boots, now.Add(-q.o.MaxAge))
	})
	if err != nil {
		return fmt.Errorf("queue: load %s: %w", q.o.Path, err)
	}
	q.set(st)
	return nil
}

// state is what a transaction leaves behind, copied into the Queue after it
// commits.
type state struct {
	n       int
	bytes   int64
	oldest  time.Time
	dropped uint64
}

func (q *Queue) snapshot() state {
	return state{n: q.n, bytes: q.bytes, oldest: q.oldest, dropped: q.dropped}
}

func (q *Queue) set(s state) {
	q.n, q.bytes, q.oldest, q.dropped = s.n, s.bytes, s.oldest, s.dropped
}

// NextSeq hands out the next telemetry seq for boot: 1 for a boot never seen
// (or pruned), then one more each call. It is on disk when NextSeq returns,
// so a seq is never handed out twice within a boot, even across kill -9.
func (q *Queue) NextSeq(boot string) (uint64, error) {
	if len(boot) > maxBootLen {
		return 0, fmt.Errorf("queue: boot id longer than %d bytes", maxBootLen)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, ErrClosed
	}
	var seq uint64
	err := q.db.Update(func(tx *bolt.Tx) error {
		boots := tx.Bucket(bucketBoots)
		seq = getUint(boots.Get([]byte(boot))) + 1
		return putBoot(boots, boot, seq, q.o.Clock())
	})
	if err != nil {
		return 0, fmt.Errorf("queue: next seq: %w", err)
	}
	return seq, nil
}

// Append stores m at the tail; it is on disk when Append returns. It then
// drops the oldest messages while the queue is above MaxBytes or its head is
// older than MaxAge, in the same transaction. m.Seq is ignored: the queue
// assigns it.
func (q *Queue) Append(m Message) error {
	return q.AppendBatch([]Message{m})
}

// AppendBatch stores ms in order in one transaction (one fsync), as Append
// does for one, and sets each ms[i].Seq to the key it was stored under (the
// caller acknowledges by it). On error no Seq is meaningful.
func (q *Queue) AppendBatch(ms []Message) error {
	if len(ms) == 0 {
		return nil
	}
	now := q.o.Clock()
	for i := range ms {
		if len(ms[i].Boot) > maxBootLen {
			return fmt.Errorf("queue: boot id longer than %d bytes", maxBootLen)
		}
		if int64(size(ms[i])) > q.o.MaxBytes {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size(ms[i]), q.o.MaxBytes)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	st := q.snapshot()
	err := q.db.Update(func(tx *bolt.Tx) error {
		for i := range ms {
			if err := q.put(tx, &ms[i], &st, now); err != nil {
				return err
			}
		}
		return q.enforce(tx.Bucket(bucketMsgs), tx.Bucket(bucketMeta), &st, now)
	})
	if err != nil {
		return fmt.Errorf("queue: append: %w", err)
	}
	q.set(st)
	return nil
}

// AppendNew creates and stores the next message of boot in one transaction
// (one fsync): it takes boot's next telemetry seq, calls build with it for
// the payload, and stores the message at the tail. A kill at any moment
// leaves either the message with its seq on disk, or neither: no seq is
// lost between being handed out and being stored.
func (q *Queue) AppendNew(boot string, created time.Time, build func(seq uint64) []byte) (Message, error) {
	if len(boot) > maxBootLen {
		return Message{}, fmt.Errorf("queue: boot id longer than %d bytes", maxBootLen)
	}
	now := q.o.Clock()
	if created.IsZero() {
		created = now
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return Message{}, ErrClosed
	}
	st := q.snapshot()
	m := Message{Boot: boot, Created: created}
	err := q.db.Update(func(tx *bolt.Tx) error {
		m.MsgSeq = getUint(tx.Bucket(bucketBoots).Get([]byte(boot))) + 1
		m.Payload = build(m.MsgSeq)
		if int64(size(m)) > q.o.MaxBytes {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size(m), q.o.MaxBytes)
		}
		if err := q.put(tx, &m, &st, now); err != nil {
			return err
		}
		return q.enforce(tx.Bucket(bucketMsgs), tx.Bucket(bucketMeta), &st, now)
	})
	if err != nil {
		return Message{}, fmt.Errorf("queue: append: %w", err)
	}
	q.set(st)
	return m, nil
}

// put stores m at the tail inside tx, sets m.Seq, records m's telemetry seq
// as handed out, and counts it in st.
func (q *Queue) put(tx *bolt.Tx, m *Message, st *state, now time.Time) error {
	msgs, boots := tx.Bucket(bucketMsgs), tx.Bucket(bucketBoots)
	if m.Created.IsZero() {
		m.Created = now
	}
	key, err := msgs.NextSequence()
	if err != nil {
		return err
	}
	m.Seq = key
	// bbolt keeps the value slice until commit: each needs its own.
	rec := appendRecord(make([]byte, 0, size(*m)-keyLen), *m)
	if err := msgs.Put(putUint(nil, key), rec); err != nil {
		return err
	}
	// A seq that reached the queue is never handed out again, even if the
	// caller did not get it from NextSeq.
	if m.MsgSeq > getUint(boots.Get([]byte(m.Boot))) {
		if err := putBoot(boots, m.Boot, m.MsgSeq, now); err != nil {
			return err
		}
	}
	if st.n == 0 {
		st.oldest = m.Created
	}
	st.n++
	st.bytes += int64(size(*m))
	return nil
}

// enforce drops messages from the head while the queue is above MaxBytes or
// the head is older than MaxAge, counts them in meta, and leaves st.oldest
// at the new head's Created.
func (q *Queue) enforce(msgs, meta *bolt.Bucket, st *state, now time.Time) error {
	cutoff := now.Add(-q.o.MaxAge)
	c := msgs.Cursor()
	var dropped uint64
	st.oldest = time.Time{}
	for k, v := c.First(); k != nil; k, v = c.First() {
		created, err := recordCreated(v)
		if err != nil {
			return fmt.Errorf("key %x: %w", k, err)
		}
		if st.bytes <= q.o.MaxBytes && !created.Before(cutoff) {
			st.oldest = created
			break
		}
		st.n--
		st.bytes -= int64(len(k) + len(v))
		dropped++
		if err := c.Delete(); err != nil {
			return err
		}
	}
	if dropped == 0 {
		return nil
	}
	st.dropped += dropped
	return meta.Put(keyDropped, putUint(nil, st.dropped))
}

// Oldest returns up to n of the oldest messages, oldest first, without
// removing them. The payloads are copies the caller owns.
func (q *Queue) Oldest(n int) ([]Message, error) {
	if n <= 0 {
		return nil, nil
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	q.mu.Unlock()
	// A read transaction does not block writers; Close waits for it.
	var out []Message
	err := q.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMsgs).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			m, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("key %x: %w", k, err)
			}
			m.Seq = getUint(k)
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, bolt.ErrDatabaseNotOpen) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("queue: oldest: %w", err)
	}
	return out, nil
}

// Ack removes the message with queue seq seq, once its PUBACK came. Acks may
// come in any order; acking a seq that is not queued (already acked or
// dropped) does nothing.
func (q *Queue) Ack(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	st := q.snapshot()
	key := putUint(nil, seq)
	removed := false
	err := q.db.Update(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bucketMsgs)
		v := msgs.Get(key)
		if v == nil {
			return nil
		}
		st.n--
		st.bytes -= int64(len(key) + len(v))
		if err := msgs.Delete(key); err != nil {
			return err
		}
		removed = true
		st.oldest = time.Time{}
		if k, v := msgs.Cursor().First(); k != nil {
			created, err := recordCreated(v)
			if err != nil {
				return fmt.Errorf("key %x: %w", k, err)
			}
			st.oldest = created
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: ack %d: %w", seq, err)
	}
	if removed {
		q.set(st)
	}
	return nil
}

// Len is the number of queued messages.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Bytes is the size of the queued messages as MaxBytes counts it.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// OldestAge is how long ago the head was created; 0 when the queue is empty
// (or the head is dated in the future).
func (q *Queue) OldestAge() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return 0
	}
	return max(q.o.Clock().Sub(q.oldest), 0)
}

// Dropped is the number of messages ever dropped for size or age; it is
// kept on disk, so it survives restarts.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Close closes the file, waiting for reads in flight. Calling it twice is
// harmless.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("queue: close: %w", err)
	}
	return nil
}

// size is the bytes a message counts against MaxBytes: its key and record.
func size(m Message) int {
	return keyLen + headerLen + len(m.Boot) + len(m.Payload)
}

// appendRecord appends m's record (layout in the package doc) to dst.
func appendRecord(dst []byte, m Message) []byte {
	dst = append(dst, recordVersion)
	dst = binary.BigEndian.AppendUint64(dst, m.MsgSeq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Created.UnixNano()))
	dst = append(dst, byte(len(m.Boot)))
	dst = append(dst, m.Boot...)
	return append(dst, m.Payload...)
}

// decodeRecord parses a record; the payload is copied, since bbolt's memory
// is only valid inside the transaction. Seq is left for the caller.
func decodeRecord(v []byte) (Message, error) {
	if len(v) < headerLen {
		return Message{}, fmt.Errorf("%w: %d bytes, header is %d", ErrCorrupt, len(v), headerLen)
	}
	if v[0] != recordVersion {
		return Message{}, fmt.Errorf("%w: version %d", ErrCorrupt, v[0])
	}
	n := int(v[17])
	if len(v) < headerLen+n {
		return Message{}, fmt.Errorf("%w: boot of %d bytes in %d", ErrCorrupt, n, len(v))
	}
	return Message{
		MsgSeq:  binary.BigEndian.Uint64(v[1:9]),
		Created: time.Unix(0, int64(binary.BigEndian.Uint64(v[9:17]))),
		Boot:    string(v[headerLen : headerLen+n]),
		Payload: bytes.Clone(v[headerLen+n:]),
	}, nil
}

// recordCreated reads only the Created field, for the bounds and the head's
// age, without copying the payload.
func recordCreated(v []byte) (time.Time, error) {
	if len(v) < headerLen || v[0] != recordVersion {
		return time.Time{}, ErrCorrupt
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[9:17]))), nil
}

func putBoot(boots *bolt.Bucket, boot string, seq uint64, now time.Time) error {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), seq)
	v = binary.BigEndian.AppendUint64(v, uint64(now.UnixNano()))
	return boots.Put([]byte(boot), v)
}

// pruneBoots deletes boots last used before cutoff. The keys are gathered
// first: deleting under a bbolt cursor while walking it can skip keys.
func pruneBoots(boots *bolt.Bucket, cutoff time.Time) error {
	var stale [][]byte
	err := boots.ForEach(func(k, v []byte) error {
		if len(v) == 16 && time.Unix(0, int64(binary.BigEndian.Uint64(v[8:16]))).Before(cutoff) {
			stale = append(stale, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := boots.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func putUint(dst []byte, x uint64) []byte { return binary.BigEndian.AppendUint64(dst, x) }

// getUint reads a big-endian uint64; nil or short values read as 0.
func getUint(v []byte) uint64 {
	if len(v) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
