package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

func testPlant() *model.Plant {
	p := &model.Plant{
		Counties:    []model.County{{ID: "c1"}, {ID: "c2"}},
		Parks:       []model.Park{{ID: "p1", County: 0}, {ID: "p2", County: 0}, {ID: "p3", County: 1}},
		Enterprises: []model.Enterprise{{ID: "e1", Park: 0}, {ID: "e2", Park: 0}, {ID: "e3", Park: 1}, {ID: "e4", Park: 2}},
		Gateways:    []model.Gateway{{ID: "g1", Enterprise: 0}, {ID: "g4", Enterprise: 3}},
	}
	p.Index()
	return p
}

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	plain, tok, err := s.Create("值班员", Officer, Scope{Kind: "county", ID: "c1"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), plain) || !strings.Contains(string(data), tok.Hash) {
		t.Fatal("the token file holds the plain token, or not its hash")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	s2, err := Open(path) // a restart
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Authenticate(plain, now.Add(time.Minute))
	if err != nil || got.ID != tok.ID || got.Role != Officer {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	for _, c := range []struct {
		plain string
		at    time.Time
		want  error
	}{
		{plain + "x", now, ErrUnknown},
		{"", now, ErrUnknown},
		{plain, now.Add(time.Hour), ErrExpired},
	} {
		if _, err := s2.Authenticate(c.plain, c.at); !errors.Is(err, c.want) {
			t.Errorf("Authenticate(%q, %v) = %v, want %v", c.plain, c.at, err, c.want)
		}
	}
	if err := s2.Revoke(tok.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Authenticate(plain, now); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked token: %v", err)
	}
	if err := s2.Revoke("tok-nope", now); err == nil {
		t.Error("revoking an unknown id succeeded")
	}
	if l := s2.List(); len(l) != 1 || l[0].Revoked.IsZero() {
		t.Errorf("List = %+v", l)
	}
}

func TestScopes(t *testing.T) {
	p := testPlant()
	tests := []struct {
		scope string
		role  Role
		ok    bool
		sees  string // enterprises covered
	}{
		{"enterprise:e1", Operator, true, "e1"},
		{"park:p1", Operator, true, "e1 e2"},
		{"park:p1", Officer, true, "e1 e2"},
		{"county:c1", Officer, true, "e1 e2 e3"},
		{"all", Admin, true, "e1 e2 e3 e4"},
		{"county:c1", Operator, false, ""},
		{"enterprise:e1", Officer, false, ""},
		{"park:p1", Admin, false, ""},
		{"enterprise:e9", Operator, false, ""},
		// A gateway's token reads nothing; it is a password at the broker.
		{"gateway:g1", Gateway, true, ""},
		{"gateway:g9", Gateway, false, ""},
		{"enterprise:e1", Gateway, false, ""},
		{"all", Gateway, false, ""},
		{"gateway:g1", Admin, false, ""},
		{"gateway:g1", Operator, false, ""},
		{"gateway:g1", Officer, false, ""},
	}
	for _, tt := range tests {
		sc, err := ParseScope(tt.scope)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(tt.role, sc, p); (err == nil) != tt.ok {
			t.Errorf("Check(%s, %s) = %v, want ok=%v", tt.role, tt.scope, err, tt.ok)
		}
		if !tt.ok {
			continue
		}
		var sees []string
		for i, e := range p.Enterprises {
			if sc.Covers(p, int32(i)) {
				sees = append(sees, e.ID)
			}
		}
		if got := strings.Join(sees, " "); got != tt.sees {
			t.Errorf("%s covers %q, want %q", tt.scope, got, tt.sees)
		}
	}
	if sc, err := ParseScope("gateway:g1"); err != nil || sc != GatewayScope("g1") || sc.String() != "gateway:g1" {
		t.Errorf(`ParseScope("gateway:g1") = %+v, %v`, sc, err)
	}
	if err := Check("engineer", Scope{Kind: "all"}, p); err == nil {
		t.Error("Check accepted an unknown role")
	}
	for _, bad := range []string{"", "enterprise", "enterprise:", "city:x", "gateway:"} {
		if _, err := ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) succeeded", bad)
		}
	}
}

// TestChangesByAnotherProcess: a token created or revoked with
// `hazardwatch token` while the centre runs takes effect there within
// reloadEvery, without a restart.
func TestChangesByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	centre, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Open(path) // the token command, as another process would
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	plain, tok, err := cli.Create("新值班员", Officer, Scope{Kind: "county", ID: "c1"}, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := centre.Authenticate(plain, now); err != nil {
		t.Fatalf("a token created by another process: %v", err)
	}
	if err := cli.Revoke(tok.ID, now); err != nil {
		t.Fatal(err)
	}
	// Within reloadEvery the centre may still accept it; after, never.
	if _, err := centre.Authenticate(plain, now.Add(reloadEvery)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a token revoked by another process: %v, want ErrRevoked", err)
	}
}
