package keys

import (
	"fmt"
	"slices"
	"time"

	"github.com/glmctl/glmctl/internal/config"
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
// keeps the old one valid until until. A zero until (or one not after now)
// ends every earlier secret at once — the one just replaced and those still
// in the grace of an earlier rotation. A clear-text entry becomes a hashed
// one. Rotated hashes whose until has passed at now are dropped.
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
	if until.IsZero() || !now.Before(until) {
		e.Previous = nil
		return nil
	}
	var kept []Previous
	for _, p := range e.Previous {
		if now.Before(p.Until) {
			kept = append(kept, p)
		}
	}
	e.Previous = append(kept, Previous{SHA256: old, Until: until.UTC()})
	return nil
}

// Replace reissues the key named r.Name in place: r's secret (its SHA-256),
// role, models, created and expires replace the entry's, every earlier
// secret (rotated ones in grace included) stops working, and a revoked
// entry is enabled again. The entry keeps its place in the file and its
// unknown fields; the limits file, keyed by name, is not touched, so the
// name keeps its limits. It reports whether the entry was revoked.
func (f *File) Replace(r *Entry) (wasRevoked bool, err error) {
	e := f.Entry(r.Name)
	if e == nil {
		return false, fmt.Errorf("replace key %q: no such key", r.Name)
	}
	if r.Clear != "" || !isHash(r.SHA256) {
		return false, fmt.Errorf("replace key %q: store the key's sha256 (64 hex digits), not the key", r.Name)
	}
	role := r.Role
	if role == "" {
		role = RoleUser
	}
	if role != RoleUser && role != RoleAdmin {
		return false, fmt.Errorf("replace key %q: role %q is not user or admin", r.Name, r.Role)
	}
	for _, o := range f.Entries {
		if o != e && slices.Contains(o.hashes(), r.SHA256) {
			return false, fmt.Errorf("replace key %q: key %q has the same secret", r.Name, o.Name)
		}
	}
	wasRevoked = e.Disabled
	e.Clear, e.SHA256, e.Role, e.Models = "", r.SHA256, role, r.Models
	e.Created, e.Expires = r.Created, r.Expires
	e.Disabled, e.Previous = false, nil
	return wasRevoked, nil
}

// SetPolicy sets the request policy of the key named name (nil or an empty
// policy: none, the config's alone). The caps must be 1 to 2^40 (0: not
// set) and the denied parameters ones the guard can deny, each once — what
// the keys file itself accepts. A key stored in clear text is stored as its
// SHA-256 from then on (its bare-string form has no room for a policy).
func (f *File) SetPolicy(name string, p *PolicyOverride) error {
	e := f.Entry(name)
	if e == nil {
		return fmt.Errorf("set the policy of key %q: no such key", name)
	}
	if p != nil && p.MaxPromptTokens == 0 && p.MaxTokens == 0 && len(p.DenyParams) == 0 {
		p = nil
	}
	if p != nil {
		for _, c := range []struct {
			name string
			v    int64
		}{{"max_prompt_tokens", p.MaxPromptTokens}, {"max_tokens", p.MaxTokens}} {
			if c.v < 0 || c.v > maxPolicyCap {
				return fmt.Errorf("key %q: policy %s must be a whole number from 1 to %d (0: none)", name, c.name, int64(maxPolicyCap))
			}
		}
		for i, d := range p.DenyParams {
			if msg := config.CheckDenyParam(d); msg != "" {
				return fmt.Errorf("key %q: policy %s", name, msg)
			}
			if slices.Contains(p.DenyParams[:i], d) {
				return fmt.Errorf("key %q: policy deny_params lists %q twice", name, d)
			}
		}
	}
	if p != nil && e.Clear != "" {
		// The clear-text form is a bare string, with no room for a policy:
		// store the key as its SHA-256, as Revoke does.
		e.SHA256, e.Clear = Hash(e.Clear), ""
		if e.Role == "" {
			e.Role = RoleUser
		}
	}
	e.Policy = p
	return nil
}
