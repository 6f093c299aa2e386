// Package keys reads, checks and writes glmctl's API keys file (DESIGN.md
// "Keys file") and looks presented keys up by their SHA-256.
//
// Two entry forms are accepted: the tutorial's clear-text string
// ("user1": "sk-…", loaded with a warning) and an object that holds only the
// key's SHA-256 in hex plus role, models, created, expires, disabled,
// previous (rotated hashes valid until their "until") and policy (caps that
// tighten the config's request policy for this key; see PolicyOverride).
// Unknown fields are warnings and are kept when the file is saved again.
// `#` and `//` comments are tolerated on reading (they are not kept by
// Save).
//
// Secrets never leave this package except through NewSecret's return value:
// errors and warnings name keys by their name, and Mask gives the most of a
// presented key that may be shown.
package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/glmctl/glmctl/internal/jsonc"
)

// Roles a key can have.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// Previous is a rotated-out key that stays valid until Until.
type Previous struct {
	SHA256 string    `json:"sha256"`
	Until  time.Time `json:"until"`
}

// Entry is one named key as written in the file.
type Entry struct {
	Name string
	// Clear is the key itself when the file holds it in clear text (the
	// tutorial's form); the other fields are then empty.
	Clear    string
	SHA256   string // lowercase hex
	Role     string // user (default) | admin
	Models   []string
	Created  time.Time
	Expires  time.Time // zero: never
	Disabled bool
	Previous []Previous
	// Policy is the key's own request policy (nil: the config's alone).
	Policy *PolicyOverride
	// Extra holds fields this version does not know, kept by Save.
	Extra map[string]json.RawMessage
}

// File is a parsed keys file, entries in file order.
type File struct {
	Entries []*Entry
	// Extra holds unknown top-level fields, kept by Save.
	Extra map[string]json.RawMessage
}

// Entry returns the entry named name, or nil.
func (f *File) Entry(name string) *Entry {
	for _, e := range f.Entries {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Warning is a problem that does not stop the file from loading.
type Warning struct {
	Line, Col int
	Msg       string
}

// String returns "line:col: message".
func (w Warning) String() string { return fmt.Sprintf("%d:%d: %s", w.Line, w.Col, w.Msg) }

// entryJSON is the object form on disk.
type entryJSON struct {
	SHA256   string     `json:"sha256"`
	Role     string     `json:"role,omitempty"`
	Models   []string   `json:"models,omitempty"`
	Created  *time.Time `json:"created,omitempty"`
	Expires  *time.Time `json:"expires,omitempty"`
	Disabled bool       `json:"disabled,omitempty"`
	Previous []Previous `json:"previous,omitempty"`
	// Policy is written by Save; Parse reads it itself (parsePolicy).
	Policy *PolicyOverride `json:"policy,omitempty"`
}

var knownEntryFields = map[string]bool{
	"sha256": true, "role": true, "models": true, "created": true,
	"expires": true, "disabled": true, "previous": true, "policy": true,
}

// Parse reads a keys file. Every problem that makes the file unusable comes
// back joined in the error, each as *jsonc.Error with line:col; problems that
// do not (clear-text keys, unknown fields) are warnings.
func Parse(src []byte) (*File, []Warning, error) {
	doc := jsonc.NewDoc(src)
	root, err := doc.Root()
	if err != nil {
		return nil, nil, err
	}
	var warns []Warning
	warn := func(off int64, format string, args ...any) {
		var je *jsonc.Error
		errors.As(doc.Errorf(off, format, args...), &je)
		warns = append(warns, Warning{Line: je.Line, Col: je.Col, Msg: je.Msg})
	}
	f := &File{}
	var keysMember *jsonc.Member
	for i := range root {
		if root[i].Name == "api_keys" {
			if keysMember != nil {
				return nil, nil, doc.Errorf(root[i].Offset, `"api_keys" given twice`)
			}
			keysMember = &root[i]
			continue
		}
		warn(root[i].Offset, "unknown field %q ignored", root[i].Name)
		if f.Extra == nil {
			f.Extra = map[string]json.RawMessage{}
		}
		f.Extra[root[i].Name] = root[i].Value
	}
	if keysMember == nil {
		return nil, nil, doc.Errorf(0, `missing "api_keys" object`)
	}
	members, err := doc.Members(*keysMember)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	seen := map[string]bool{}
	hashes := map[string]string{}
	for _, m := range members {
		e, problems := parseEntry(doc, m, warn)
		errs = append(errs, problems...)
		if e == nil {
			continue
		}
		if seen[e.Name] {
			errs = append(errs, doc.Errorf(m.Offset, "key %q defined twice", e.Name))
			continue
		}
		seen[e.Name] = true
		for _, h := range e.hashes() {
			if other, dup := hashes[h]; dup {
				errs = append(errs, doc.Errorf(m.Offset, "key %q has the same secret as key %q", e.Name, other))
			}
			hashes[h] = e.Name
		}
		f.Entries = append(f.Entries, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, warns, err
	}
	return f, warns, nil
}

func parseEntry(doc *jsonc.Doc, m jsonc.Member, warn func(int64, string, ...any)) (*Entry, []error) {
	e := &Entry{Name: m.Name}
	if m.Name == "" {
		return nil, []error{doc.Errorf(m.Offset, "a key needs a non-empty name")}
	}
	var clear string
	if json.Unmarshal(m.Value, &clear) == nil {
		if len(clear) < 8 {
			return nil, []error{doc.Errorf(m.ValueOffset, "key %q: a key must be at least 8 characters", m.Name)}
		}
		warn(m.ValueOffset, "key %q is stored in clear text; store its sha256 instead (glmctl keys hash)", m.Name)
		e.Clear = clear
		e.Role = RoleUser
		return e, nil
	}
	fields, err := doc.Members(m)
	if err != nil {
		return nil, []error{doc.Errorf(m.ValueOffset, "key %q must be a string or an object", m.Name)}
	}
	// Known fields are matched by their exact name, once each: encoding/json
	// would also take "SHA256" or "Previous" (case-insensitively) and the
	// last of two "disabled", so a field warned about as ignored could
	// count, and Save, which writes both, could change what the key opens.
	var errs []error
	known := map[string]bool{}
	obj := []byte{'{'}
	for _, fm := range fields {
		if !knownEntryFields[fm.Name] {
			warn(fm.Offset, "key %q: unknown field %q ignored", m.Name, fm.Name)
			if e.Extra == nil {
				e.Extra = map[string]json.RawMessage{}
			}
			e.Extra[fm.Name] = fm.Value
			continue
		}
		if known[fm.Name] {
			errs = append(errs, doc.Errorf(fm.Offset, "key %q: field %q given twice", m.Name, fm.Name))
			continue
		}
		known[fm.Name] = true
		if fm.Name == "policy" {
			p, perrs := parsePolicy(doc, fm, m.Name)
			errs = append(errs, perrs...)
			e.Policy = p
			continue
		}
		if len(obj) > 1 {
			obj = append(obj, ',')
		}
		obj = append(append(append(obj, mustJSON(fm.Name)...), ':'), fm.Value...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var ej entryJSON
	if err := doc.Decode(jsonc.Member{Name: m.Name, Value: append(obj, '}'), ValueOffset: m.ValueOffset}, &ej); err != nil {
		return nil, []error{err}
	}
	e.SHA256 = strings.ToLower(ej.SHA256)
	if !isHash(e.SHA256) {
		errs = append(errs, doc.Errorf(m.ValueOffset, "key %q: sha256 must be 64 hex digits", m.Name))
	}
	e.Role = ej.Role
	switch e.Role {
	case "":
		e.Role = RoleUser
	case RoleUser, RoleAdmin:
	default:
		errs = append(errs, doc.Errorf(m.ValueOffset, "key %q: role %q is not user or admin", m.Name, ej.Role))
	}
	e.Models = ej.Models
	if ej.Created != nil {
		e.Created = *ej.Created
	}
	if ej.Expires != nil {
		e.Expires = *ej.Expires
	}
	e.Disabled = ej.Disabled
	for _, p := range ej.Previous {
		p.SHA256 = strings.ToLower(p.SHA256)
		if !isHash(p.SHA256) {
			errs = append(errs, doc.Errorf(m.ValueOffset, "key %q: previous sha256 must be 64 hex digits", m.Name))
		}
		if p.Until.IsZero() {
			errs = append(errs, doc.Errorf(m.ValueOffset, "key %q: previous entry needs an \"until\" time", m.Name))
		}
		e.Previous = append(e.Previous, p)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return e, nil
}

// hashes returns every SHA-256 (hex) that opens this entry.
func (e *Entry) hashes() []string {
	var out []string
	if e.Clear != "" {
		out = append(out, Hash(e.Clear))
	} else {
		out = append(out, e.SHA256)
	}
	for _, p := range e.Previous {
		out = append(out, p.SHA256)
	}
	return out
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ReadFile reads and parses the keys file at path.
func ReadFile(path string) (*File, []Warning, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read keys file: %w", err)
	}
	f, w, err := Parse(src)
	if err != nil {
		return nil, w, jsonc.InFile(path, err)
	}
	return f, w, nil
}

// Hash returns the lowercase hex SHA-256 of a key, the form the file stores.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Mask returns a form of a presented key safe to show: its first 5 and last
// 4 characters around an ellipsis ("sk-ab…r901"), or "…" alone for keys too
// short to hide anything.
func Mask(secret string) string {
	if len(secret) < 16 {
		return "…"
	}
	return secret[:5] + "…" + secret[len(secret)-4:]
}
