package keys

import (
	"fmt"
	"slices"
	"time"
)

// Add appends e (which must hold a SHA-256, not a clear key) to the file.
func (f *File) Add(e *Entry) error {
	if e.Name == "" {
		return fmt.Errorf("add key: a key needs a name")
	}
	if f.Entry(e.Name) != nil {
		return fmt.Errorf("add key %q: a key with that name exists", e.Name)
	}
	if e.Clear != "" || !isHash(e.SHA256) {
		return fmt.Errorf("add key %q: store the key's sha256 (64 hex digits), not the key", e.Name)
	}
	if e.Role == "" {
		e.Role = RoleUser
	}
	if e.Role != RoleUser && e.Role != RoleAdmin {
		return fmt.Errorf("add key %q: role %q is not user or admin", e.Name, e.Role)
	}
	f.Entries = append(f.Entries, e)
	return nil
}

// Remove deletes the entry named name and reports whether there was one.
func (f *File) Remove(name string) bool {
	i := slices.IndexFunc(f.Entries, func(e *Entry) bool { return e.Name == name })
	if i < 0 {
		return false
	}
	f.Entries = slices.Delete(f.Entries, i, i+1)
	return true
}

// Rotate gives the key named name a new secret (stored as its SHA-256) and
// keeps the old one valid until until (a zero until drops it at once). A
// clear-text entry becomes a hashed one. Rotated hashes whose until has
// passed at now are dropped.
func (f *File) Rotate(name, newSecret string, until, now time.Time) error {
	e := f.Entry(name)
	if e == nil {
		return fmt.Errorf("rotate key %q: no such key", name)
	}
	old := e.SHA256
	if e.Clear != "" {
		old, e.Clear = Hash(e.Clear), ""
		if e.Role == "" {
			e.Role = RoleUser
		}
	}
	e.SHA256 = Hash(newSecret)
	kept := e.Previous[:0]
	for _, p := range e.Previous {
		if now.Before(p.Until) {
			kept = append(kept, p)
		}
	}
	e.Previous = kept
	if !until.IsZero() && now.Before(until) {
		e.Previous = append(e.Previous, Previous{SHA256: old, Until: until.UTC()})
	}
	return nil
}
