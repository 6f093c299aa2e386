package keys

import (
	"errors"
	"testing"
	"time"
)

// TestRotateGraceZeroEndsEveryEarlierSecret: a rotation without grace ends
// the secret it replaces and every one still in an earlier rotation's grace.
func TestRotateGraceZeroEndsEveryEarlierSecret(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f, _, err := Parse([]byte(`{"api_keys": {"bob": "sk-bob-first-key-0001", "eve": "sk-eve-key-000000001"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Rotate("bob", "sk-bob-second-key-002", now.Add(24*time.Hour), now); err != nil {
		t.Fatal(err)
	}
	s := NewSet(f)
	for _, secret := range []string{"sk-bob-first-key-0001", "sk-bob-second-key-002"} {
		if k, err := s.Lookup(secret, now.Add(time.Hour)); err != nil || k.Name != "bob" {
			t.Fatalf("%s during the grace: %v %v", Mask(secret), k, err)
		}
	}
	if err := f.Rotate("bob", "sk-bob-third-key-0003", time.Time{}, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(f.Entry("bob").Previous) != 0 {
		t.Fatalf("previous after --grace 0: %+v", f.Entry("bob").Previous)
	}
	s = NewSet(f)
	later := now.Add(2 * time.Hour)
	for _, secret := range []string{"sk-bob-first-key-0001", "sk-bob-second-key-002"} {
		if k, err := s.Lookup(secret, later); !errors.Is(err, ErrUnknown) || k != nil {
			t.Errorf("%s after a rotation with grace 0: %v %v, want unknown", Mask(secret), k, err)
		}
	}
	if k, err := s.Lookup("sk-bob-third-key-0003", later); err != nil || k.Name != "bob" {
		t.Errorf("the new key: %v %v", k, err)
	}
	// A grace that is already over counts as none.
	if err := f.Rotate("eve", "sk-eve-key-000000002", later.Add(-time.Second), later); err != nil {
		t.Fatal(err)
	}
	if len(f.Entry("eve").Previous) != 0 {
		t.Errorf("eve keeps a previous secret whose grace is over")
	}
}

// TestLookupReturnsTheKeyWithItsRefusal: a disabled or expired key comes
// back with its error, so the guard can record who still uses it; an
// unknown secret has no key.
func TestLookupReturnsTheKeyWithItsRefusal(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	src := `{"api_keys": {
  "off": {"sha256": "` + Hash("sk-off-secret-key-1") + `", "disabled": true},
  "old": {"sha256": "` + Hash("sk-old-secret-key-1") + `", "expires": "2026-01-01T00:00:00Z"},
  "rot": {"sha256": "` + Hash("sk-rot-current-key-1") + `", "role": "admin",
          "previous": [{"sha256": "` + Hash("sk-rot-previous-key-1") + `", "until": "2026-11-25T11:00:00Z"}]}
}}`
	f, _, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSet(f)
	for _, tc := range []struct {
		secret, name string
		err          error
	}{
		{"sk-off-secret-key-1", "off", ErrDisabled},
		{"sk-old-secret-key-1", "old", ErrExpired},
		{"sk-rot-previous-key-1", "rot", ErrExpired},
		{"sk-rot-current-key-1", "rot", nil},
		{"sk-nobody-at-all-123", "", ErrUnknown},
	} {
		k, err := s.Lookup(tc.secret, now)
		if !errors.Is(err, tc.err) || err != nil && tc.err == nil {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
		switch {
		case tc.name == "" && k != nil:
			t.Errorf("an unknown secret came back with key %q", k.Name)
		case tc.name != "" && (k == nil || k.Name != tc.name):
			t.Errorf("%s: key %+v, want the key named %q", Mask(tc.secret), k, tc.name)
		}
	}
}

// TestReplaceReissuesARevokedName: keys new NAME --replace gives a revoked
// (or active) name a new secret in place; every earlier secret stops working.
func TestReplaceReissuesARevokedName(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f, _, err := Parse([]byte(`{"api_keys": {"a": "sk-aaaaaaaaaaaaaaaa", "bob": {"sha256": "` + Hash("sk-bob-old-key-00001") + `",
  "role": "admin", "models": ["m1"], "team": "blue",
  "previous": [{"sha256": "` + Hash("sk-bob-older-key-0001") + `", "until": "2027-01-01T00:00:00Z"}]}, "z": "sk-zzzzzzzzzzzzzzzz"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Revoke("bob"); err != nil {
		t.Fatal(err)
	}
	was, err := f.Replace(&Entry{Name: "bob", SHA256: Hash("sk-bob-new-key-00001"), Created: now})
	if err != nil || !was {
		t.Fatalf("Replace: %v %v", was, err)
	}
	e := f.Entry("bob")
	if e.Disabled || len(e.Previous) != 0 || e.Role != RoleUser || len(e.Models) != 0 || !e.Created.Equal(now) || string(e.Extra["team"]) != `"blue"` {
		t.Errorf("replaced entry %+v", e)
	}
	if f.Entries[1] != e {
		t.Error("the entry moved")
	}
	s := NewSet(f)
	if k, err := s.Lookup("sk-bob-new-key-00001", now); err != nil || k.Name != "bob" {
		t.Errorf("new secret: %v %v", k, err)
	}
	for _, old := range []string{"sk-bob-old-key-00001", "sk-bob-older-key-0001"} {
		if _, err := s.Lookup(old, now); !errors.Is(err, ErrUnknown) {
			t.Errorf("%s after replace: %v", Mask(old), err)
		}
	}
	if _, err := f.Replace(&Entry{Name: "nobody", SHA256: Hash("x")}); err == nil {
		t.Error("replace of a missing name")
	}
	if _, err := f.Replace(&Entry{Name: "bob", SHA256: Hash("sk-aaaaaaaaaaaaaaaa")}); err == nil {
		t.Error("replace with another key's secret")
	}
	if _, err := f.Replace(&Entry{Name: "bob", Clear: "sk-clear-clear-clear"}); err == nil {
		t.Error("replace with a clear-text secret")
	}
}
