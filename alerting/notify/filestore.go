package notify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileStore is a Store in one bbolt file (go.etcd.io/bbolt, as the
// gateway's queue): every Record is committed and fsynced before it
// returns, so what was delivered before a crash is known after it.
//
// Layout (integers big-endian, so byte order is time order):
//
//	bucket "keys"  key: the key's bytes; value: int64 Unix ns recorded
//	bucket "times" key: int64 Unix ns, then the key's bytes; value: empty
//
// "times" lets Expire walk from the oldest without reading every key.
type FileStore struct {
	db *bolt.DB
}

var (
	bucketKeys  = []byte("keys")
	bucketTimes = []byte("times")
)

// OpenFileStore opens (or creates) the store file at path.
func OpenFileStore(path string) (*FileStore, error) {
	// bbolt waits forever for the file lock by default; a second centre on
	// the same file should fail, not hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("notify: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKeys, bucketTimes} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("notify: %s: %w", path, err)
	}
	return &FileStore{db: db}, nil
}

// Close closes the file.
func (s *FileStore) Close() error { return s.db.Close() }

// Lookup implements Store.
func (s *FileStore) Lookup(key string) (t time.Time, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKeys).Get([]byte(key))
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("notify: store: key %q: value of %d bytes", key, len(v))
		}
		t, ok = time.Unix(0, int64(binary.BigEndian.Uint64(v))), true
		return nil
	})
	return t, ok, err
}

// Record implements Store.
func (s *FileStore) Record(key string, t time.Time) error {
	if key == "" {
		return errors.New("notify: store: empty key")
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		keys, times := tx.Bucket(bucketKeys), tx.Bucket(bucketTimes)
		if old := keys.Get([]byte(key)); len(old) == 8 {
			if err := times.Delete(timeKey(int64(binary.BigEndian.Uint64(old)), key)); err != nil {
				return err
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(t.UnixNano()))
		if err := keys.Put([]byte(key), v[:]); err != nil {
			return err
		}
		return times.Put(timeKey(t.UnixNano(), key), nil)
	})
}

// Expire implements Store.
func (s *FileStore) Expire(cutoff time.Time) (int, error) {
	var end [8]byte
	binary.BigEndian.PutUint64(end[:], uint64(cutoff.UnixNano()))
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		keys, times := tx.Bucket(bucketKeys), tx.Bucket(bucketTimes)
		c := times.Cursor()
		for k, _ := c.First(); k != nil && len(k) >= 8 && bytes.Compare(k[:8], end[:]) < 0; k, _ = c.First() {
			if err := keys.Delete(k[8:]); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Len returns how many keys are remembered.
func (s *FileStore) Len() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketKeys).Stats().KeyN
		return nil
	})
	return n, err
}

func timeKey(ns int64, key string) []byte {
	b := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(b, uint64(ns))
	copy(b[8:], key)
	return b
}
