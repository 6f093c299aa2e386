package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"time"
)

// Lookup errors. None of them carries the presented key.
var (
	ErrUnknown  = errors.New("unknown key")
	ErrExpired  = errors.New("expired key")
	ErrDisabled = errors.New("disabled key")
)

// Key is what a successful lookup yields: who is calling and what they may do.
type Key struct {
	Name    string
	Role    string   // user | admin
	Models  []string // empty: every model
	Expires time.Time
	// Clear is true when the file holds this key in clear text.
	Clear bool
	// Policy is the key's own request policy (nil: the config's alone);
	// shared with the File, never modified.
	Policy *PolicyOverride
}

// AllowsModel reports whether the key may use model (always true when the
// key has no models list).
func (k *Key) AllowsModel(model string) bool {
	return len(k.Models) == 0 || slices.Contains(k.Models, model)
}

// IsAdmin reports whether the key has the admin role.
func (k *Key) IsAdmin() bool { return k.Role == RoleAdmin }

type match struct {
	key      *Key
	disabled bool
	until    time.Time // a rotated-out hash: valid until then (zero: current key)
}

// Set answers "which key is this?" by the SHA-256 of the presented secret: the
// secret is hashed once and the digest is looked up in a map, so no secret is
// ever compared byte by byte and the timing reveals nothing about stored keys.
// A Set is immutable and safe for concurrent use.
type Set struct {
	byHash map[[sha256.Size]byte]match
	names  map[string]*Key
}

// NewSet builds the lookup table of f (which Parse has validated).
func NewSet(f *File) *Set {
	s := &Set{byHash: map[[sha256.Size]byte]match{}, names: map[string]*Key{}}
	for _, e := range f.Entries {
		k := &Key{Name: e.Name, Role: e.Role, Models: e.Models, Expires: e.Expires, Clear: e.Clear != "", Policy: e.Policy}
		s.names[e.Name] = k
		var cur [sha256.Size]byte
		if e.Clear != "" {
			cur = sha256.Sum256([]byte(e.Clear))
		} else {
			cur = fromHex(e.SHA256)
		}
		s.byHash[cur] = match{key: k, disabled: e.Disabled}
		for _, p := range e.Previous {
			s.byHash[fromHex(p.SHA256)] = match{key: k, disabled: e.Disabled, until: p.Until}
		}
	}
	return s
}

func fromHex(h string) [sha256.Size]byte {
	var out [sha256.Size]byte
	_, _ = hex.Decode(out[:], []byte(h)) // validated by Parse
	return out
}

// Lookup finds the key whose secret is presented, as of now. A secret that
// belongs to a key the caller may not use comes back with that key and
// ErrDisabled (revoked) or ErrExpired (the key expired, or the secret was
// rotated out and its grace is over), so the caller can record who still
// uses it; only ErrUnknown comes with a nil key. Callers must check the
// error before trusting the key.
func (s *Set) Lookup(secret string, now time.Time) (*Key, error) {
	m, ok := s.byHash[sha256.Sum256([]byte(secret))]
	switch {
	case !ok:
		return nil, ErrUnknown
	case m.disabled:
		return m.key, ErrDisabled
	case !m.key.Expires.IsZero() && !now.Before(m.key.Expires):
		return m.key, ErrExpired
	case !m.until.IsZero() && !now.Before(m.until):
		return m.key, ErrExpired
	}
	return m.key, nil
}

// Has reports whether a key named name exists.
func (s *Set) Has(name string) bool { _, ok := s.names[name]; return ok }

// Len returns the number of named keys.
func (s *Set) Len() int { return len(s.names) }
