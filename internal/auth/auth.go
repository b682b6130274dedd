// Package auth owns tokens: users of the API with a role and a scope
// (SPEC §3), and gateways, whose token is their password at the embedded
// MQTT broker; all stored hashed under the data directory, and the check of
// a scope against the plant's objects.
//
// Tokens are 32 random bytes, so a single SHA-256 is enough to store them:
// a slow password hash protects guessable secrets, and these are not.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"hazardwatch/internal/atomicfile"
	"hazardwatch/internal/model"
)

// Role is what a user may do.
type Role string

const (
	Operator Role = "operator" // read; acknowledge, shelve, feedback, comment
	Officer  Role = "officer"  // read; comment; acknowledge as supervisor; reports
	Admin    Role = "admin"    // everything, tokens and plant status included
	// Gateway is an edge gateway at the embedded MQTT broker: it publishes
	// its own telemetry and status and nothing else, and the HTTP API
	// refuses its token.
	Gateway Role = "gateway"
)

// Scope is the part of the plant a user sees: an enterprise, a park, a
// county, or everything ("all", admins only); or, for a gateway's token,
// the one gateway it speaks for.
type Scope struct {
	Kind string `json:"kind"` // enterprise | park | county | all | gateway
	ID   string `json:"id,omitempty"`
}

// GatewayScope is the scope of gateway id's token.
func GatewayScope(id string) Scope { return Scope{Kind: "gateway", ID: id} }

func (s Scope) String() string {
	if s.Kind == "all" {
		return "all"
	}
	return s.Kind + ":" + s.ID
}

// ParseScope reads "enterprise:e01", "park:p01", "county:c01",
// "gateway:gw-e01-1" or "all".
func ParseScope(s string) (Scope, error) {
	if s == "all" {
		return Scope{Kind: "all"}, nil
	}
	kind, id, ok := strings.Cut(s, ":")
	if !ok || id == "" || !slices.Contains([]string{"enterprise", "park", "county", "gateway"}, kind) {
		return Scope{}, fmt.Errorf("scope %q: want enterprise:ID, park:ID, county:ID, gateway:ID or all", s)
	}
	return Scope{Kind: kind, ID: id}, nil
}

// Check reports whether role may hold scope (SPEC §3's table; a gateway's
// token holds its gateway and only a gateway's token holds one), and
// whether the scope names an object of the plant.
func Check(role Role, sc Scope, p *model.Plant) error {
	allowed := map[Role][]string{
		Operator: {"enterprise", "park"},
		Officer:  {"park", "county"},
		Admin:    {"all"},
		Gateway:  {"gateway"},
	}[role]
	if allowed == nil {
		return fmt.Errorf("role %q: want operator, officer, admin or gateway", role)
	}
	if !slices.Contains(allowed, sc.Kind) {
		return fmt.Errorf("role %s takes a scope of %s, not %s", role, strings.Join(allowed, " or "), sc.Kind)
	}
	var ok bool
	switch sc.Kind {
	case "all":
		ok = true
	case "enterprise":
		_, ok = p.EnterpriseIndex(sc.ID)
	case "park":
		_, ok = p.ParkIndex(sc.ID)
	case "county":
		_, ok = p.CountyIndex(sc.ID)
	case "gateway":
		_, ok = p.GatewayIndex(sc.ID)
	}
	if !ok {
		return fmt.Errorf("no %s %q in the plant", sc.Kind, sc.ID)
	}
	return nil
}

// Covers reports whether scope sc includes enterprise e of plant p. A
// gateway's scope covers none: its token reads nothing.
func (sc Scope) Covers(p *model.Plant, e int32) bool {
	if e < 0 || int(e) >= len(p.Enterprises) {
		return false
	}
	ent := p.Enterprises[e]
	park := p.Parks[ent.Park]
	switch sc.Kind {
	case "all":
		return true
	case "enterprise":
		return ent.ID == sc.ID
	case "park":
		return park.ID == sc.ID
	case "county":
		return p.Counties[park.County].ID == sc.ID
	}
	return false
}

// Token is a stored token: never the token itself, only its hash.
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Scope   Scope     `json:"scope"`
	Hash    string    `json:"sha256"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// Errors of Authenticate; the API answers 401 to each, the MQTT broker
// refuses the connection.
var (
	ErrUnknown = errors.New("auth: unknown token")
	ErrExpired = errors.New("auth: token expired")
	ErrRevoked = errors.New("auth: token revoked")
)

// Store keeps the tokens in one JSON file, rewritten atomically.
type Store struct {
	path string

	mu     sync.RWMutex
	tokens []Token
	byHash map[string]int
	// The file as last read: `hazardwatch token` may change it while the
	// centre runs, and a revocation must take effect without a restart.
	fileMod   time.Time
	fileSize  int64
	lastCheck time.Time
}

// reloadEvery bounds how often Authenticate looks at the file.
const reloadEvery = time.Second

// Open reads the token file at path; a missing file is an empty store.
func Open(path string) (*Store, error) {
	s := &Store{path: path, byHash: map[string]int{}}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the file; the caller holds mu (or owns s alone).
func (s *Store) load() error {
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	var tokens []Token
	if err := json.Unmarshal(data, &tokens); err != nil {
		return fmt.Errorf("auth: %s: %w", s.path, err)
	}
	s.tokens, s.byHash = tokens, make(map[string]int, len(tokens))
	for i, t := range tokens {
		s.byHash[t.Hash] = i
	}
	s.fileMod, s.fileSize = fi.ModTime(), fi.Size()
	return nil
}

// refresh rereads the file when another process changed it, at most once
// a reloadEvery; a file that cannot be read keeps the tokens as they were.
func (s *Store) refresh(now time.Time) {
	s.mu.RLock()
	due := now.Sub(s.lastCheck) >= reloadEvery
	s.mu.RUnlock()
	if !due {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastCheck = now
	fi, err := os.Stat(s.path)
	if err != nil || (fi.ModTime().Equal(s.fileMod) && fi.Size() == s.fileSize) {
		return
	}
	_ = s.load()
}

func hashOf(plain string) string {
	h := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(h[:])
}

// Create makes a token and returns it in plain text: the only time it is
// shown. ttl 0 means it does not expire.
func (s *Store) Create(name string, role Role, sc Scope, ttl time.Duration, now time.Time) (string, Token, error) {
	var secret, id [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Token{}, fmt.Errorf("auth: %w", err)
	}
	if _, err := rand.Read(id[:4]); err != nil {
		return "", Token{}, fmt.Errorf("auth: %w", err)
	}
	plain := "hw_" + base64.RawURLEncoding.EncodeToString(secret[:])
	t := Token{ID: "tok-" + hex.EncodeToString(id[:4]), Name: name, Role: role, Scope: sc, Hash: hashOf(plain), Created: now.UTC()}
	if ttl > 0 {
		t.Expires = now.Add(ttl).UTC()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = append(s.tokens, t)
	s.byHash[t.Hash] = len(s.tokens) - 1
	if err := s.save(); err != nil {
		s.tokens = s.tokens[:len(s.tokens)-1]
		delete(s.byHash, t.Hash)
		return "", Token{}, err
	}
	return plain, t, nil
}

// List returns every token, revoked ones included.
func (s *Store) List() []Token {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.tokens)
}

// Revoke ends a token by id.
func (s *Store) Revoke(id string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.tokens {
		if s.tokens[i].ID == id {
			if !s.tokens[i].Revoked.IsZero() {
				return fmt.Errorf("auth: %s is already revoked", id)
			}
			s.tokens[i].Revoked = now.UTC()
			return s.save()
		}
	}
	return fmt.Errorf("auth: no token %q", id)
}

// Authenticate finds the token a request carries.
func (s *Store) Authenticate(plain string, now time.Time) (Token, error) {
	s.refresh(now)
	h := hashOf(plain)
	s.mu.RLock()
	i, ok := s.byHash[h]
	var t Token
	if ok {
		t = s.tokens[i]
	}
	s.mu.RUnlock()
	// The map lookup already matched; comparing again in constant time keeps
	// the answer's timing from depending on how much of a hash matched.
	if !ok || subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) != 1 {
		return Token{}, ErrUnknown
	}
	if !t.Revoked.IsZero() {
		return Token{}, ErrRevoked
	}
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return Token{}, ErrExpired
	}
	return t, nil
}

// save writes the file atomically: a crash leaves the old or the new one.
func (s *Store) save() error {
	data, err := json.MarshalIndent(s.tokens, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("auth: save %s: %w", s.path, err)
	}
	if fi, err := os.Stat(s.path); err == nil {
		s.fileMod, s.fileSize = fi.ModTime(), fi.Size()
	}
	return nil
}
