package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// MaxLine bounds a stored line: Append refuses a larger record and Verify
// reports a longer line, so a reader never holds more than this of one
// line.
const MaxLine = 1 << 20

// hashed is a record as it is hashed: every field of Record but Hash, in
// the order they are stored.
type hashed struct {
	Seq    uint64          `json:"seq"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`
	Role   string          `json:"role,omitempty"`
	From   string          `json:"from"`
	Action string          `json:"action"`
	Object string          `json:"object"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	Prev   string          `json:"prev"`
}

// hashSuffix is how every stored line ends: the hash, then the closing
// brace. A line is the JSON of hashed with `,"hash":"…"` spliced in
// before its closing brace, and the hash is SHA-256 over the bytes of that
// JSON as stored (the line without the splice), so verifying never
// depends on encoding a record again the same way.
const (
	hashKey    = `,"hash":"`
	hashHexLen = 2 * sha256.Size
	suffixLen  = len(hashKey) + hashHexLen + len(`"}`)
)

// encode fills r.Hash and returns the stored line, newline included.
func encode(r *Record) ([]byte, error) {
	body, err := json.Marshal(hashed{
		Seq: r.Seq, At: r.At, Actor: r.Actor, Role: r.Role, From: r.From,
		Action: r.Action, Object: r.Object, Before: r.Before, After: r.After, Prev: r.Prev,
	})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	r.Hash = hex.EncodeToString(sum[:])
	line := make([]byte, 0, len(body)+suffixLen)
	line = append(line, body[:len(body)-1]...)
	line = append(line, hashKey...)
	line = append(line, r.Hash...)
	line = append(line, `"}`...)
	line = append(line, '\n')
	return line, nil
}

// Errors of decode: what is wrong with one line.
var (
	errNoHash   = errors.New("no hash at the end of the line")
	errBadHash  = errors.New("the hash does not match the record's content")
	errBadField = errors.New("not a record")
)

// decode parses one stored line (without its newline) and checks its hash.
func decode(line []byte) (Record, error) {
	if len(line) < suffixLen+2 || !bytes.HasSuffix(line, []byte(`"}`)) ||
		!bytes.Equal(line[len(line)-suffixLen:len(line)-suffixLen+len(hashKey)], []byte(hashKey)) {
		return Record{}, errNoHash
	}
	hexHash := line[len(line)-hashHexLen-2 : len(line)-2]
	var want [sha256.Size]byte
	if n, err := hex.Decode(want[:], hexHash); err != nil || n != sha256.Size || !isLowerHex(hexHash) {
		return Record{}, errNoHash
	}
	body := make([]byte, 0, len(line)-suffixLen+1)
	body = append(body, line[:len(line)-suffixLen]...)
	body = append(body, '}')
	if sha256.Sum256(body) != want {
		return Record{}, errBadHash
	}
	var h hashed
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return Record{}, fmt.Errorf("%w: %v", errBadField, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Record{}, fmt.Errorf("%w: data after the record", errBadField)
	}
	if h.Seq == 0 || h.At.IsZero() || h.Action == "" {
		return Record{}, fmt.Errorf("%w: seq, at or action missing", errBadField)
	}
	if h.Prev != "" && (len(h.Prev) != hashHexLen || !isLowerHex([]byte(h.Prev))) {
		return Record{}, fmt.Errorf("%w: prev is not a SHA-256 in hex", errBadField)
	}
	return Record{
		Seq: h.Seq, At: h.At,
		Entry: Entry{Actor: h.Actor, Role: h.Role, From: h.From, Action: h.Action, Object: h.Object, Before: h.Before, After: h.After},
		Prev:  h.Prev, Hash: string(hexHash),
	}, nil
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
