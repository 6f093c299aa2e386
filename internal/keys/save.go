package keys

import (
	"github.com/glmctl/glmctl/internal/atomicfile"

	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// Marshal renders f as the keys file, entries in order, one per line,
// unknown fields kept. The result always parses back with Parse.
func (f *File) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("{\n")
	for _, name := range sortedKeys(f.Extra) {
		fmt.Fprintf(&buf, "  %s: %s,\n", mustJSON(name), f.Extra[name])
	}
	buf.WriteString("  \"api_keys\": {")
	for i, e := range f.Entries {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString("\n    ")
		buf.Write(mustJSON(e.Name))
		buf.WriteString(": ")
		v, err := e.marshal()
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", e.Name, err)
		}
		buf.Write(v)
	}
	buf.WriteString("\n  }\n}\n")
	if _, _, err := Parse(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("refusing to write a keys file that does not parse: %w", err)
	}
	return buf.Bytes(), nil
}

func (e *Entry) marshal() ([]byte, error) {
	if e.Clear != "" {
		return json.Marshal(e.Clear)
	}
	ej := entryJSON{SHA256: e.SHA256, Role: e.Role, Models: e.Models, Disabled: e.Disabled, Previous: e.Previous, Policy: e.Policy}
	if !e.Created.IsZero() {
		ej.Created = &e.Created
	}
	if !e.Expires.IsZero() {
		ej.Expires = &e.Expires
	}
	known, err := json.Marshal(ej)
	if err != nil {
		return nil, err
	}
	if len(e.Extra) == 0 {
		return known, nil
	}
	all := map[string]json.RawMessage{}
	if err := json.Unmarshal(known, &all); err != nil {
		return nil, err
	}
	for k, v := range e.Extra {
		if _, clash := all[k]; !clash {
			all[k] = v
		}
	}
	return json.Marshal(all)
}

func sortedKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func mustJSON(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

// Save writes f to path atomically: a temporary file in the same directory
// with the old file's mode and owner (0600 for a new file), fsync, rename over
// path, fsync of the directory. It never writes a file that would not parse.
// Symlinked paths are resolved, so the link's target is replaced.
func Save(path string, f *File) error {
	data, err := f.Marshal()
	if err != nil {
		return err
	}
	return writeFile(path, data)
}

// writeFile replaces path with data atomically, keeping its mode and owner.
func writeFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("save keys file: %w", err)
	}
	return nil
}
