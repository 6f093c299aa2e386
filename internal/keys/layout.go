package keys

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/glmctl/glmctl/internal/jsonc"
)

// A keys file is edited in its own text, not rewritten from scratch, so its
// `#` and `//` comments, blank lines, layout and untouched entries stay as
// they are: a changed entry gets a new value where its old value was, a
// removed entry loses its lines (its same-line comment too, the comment
// lines above it stay), and new entries go after the last one, on lines of
// their own with the same indentation. Everything outside the entries that
// change is kept byte for byte.

// member is one "name": value of the api_keys object, split at the places
// an edit cuts: the complete lines before it (lead), the indentation of its
// own line, the member itself, and what follows it on its line (its trailing
// comment, with the separating comma cut out).
type member struct {
	name              string
	lead, indent      []byte
	start, valueStart int // offsets in the source
	valueEnd          int
	trail             []byte
}

// layout is the api_keys object of a keys file, cut into members.
type layout struct {
	src         []byte
	open, close int // offsets of the object's braces
	members     []member
	closeLead   []byte // between the last member's line and the closing brace
}

// readLayout cuts src (a keys file that Parse accepts) into its members.
func readLayout(src []byte) (*layout, bool) {
	doc := jsonc.NewDoc(src)
	root, err := doc.Root()
	if err != nil {
		return nil, false
	}
	i := slices.IndexFunc(root, func(m jsonc.Member) bool { return m.Name == "api_keys" })
	if i < 0 {
		return nil, false
	}
	obj := root[i]
	ms, err := doc.Members(obj)
	if err != nil {
		return nil, false
	}
	clean := jsonc.Strip(src)
	l := &layout{src: src, open: int(obj.ValueOffset), close: int(obj.ValueOffset) + len(obj.Value) - 1}
	if l.open >= len(src) || src[l.open] != '{' || l.close >= len(src) || src[l.close] != '}' {
		return nil, false
	}
	prevEnd := l.open + 1
	for k, m := range ms {
		mb := member{name: m.Name, start: int(m.Offset), valueStart: int(m.ValueOffset), valueEnd: int(m.ValueOffset) + len(m.Value)}
		if mb.start < prevEnd || mb.valueEnd > l.close || !bytes.Equal(clean[mb.valueStart:mb.valueEnd], m.Value) {
			return nil, false
		}
		lead := src[prevEnd:mb.start]
		nl := bytes.LastIndexByte(lead, '\n') + 1
		mb.lead, mb.indent = lead[:nl], lead[nl:]
		// What follows: the comma (not the last member) or the closing brace;
		// the member's line ends there when only blanks and a comment remain.
		sep := mb.valueEnd
		for sep < l.close && isBlank(clean[sep]) {
			sep++
		}
		last := k == len(ms)-1
		if last != (sep == l.close) || !last && clean[sep] != ',' {
			return nil, false
		}
		from := sep + 1 // after the comma
		if last {
			from = mb.valueEnd
		}
		end := from
		eol := from
		for eol < l.close && isBlank(clean[eol]) && clean[eol] != '\n' {
			eol++
		}
		if eol < l.close && clean[eol] == '\n' {
			end = eol + 1
		}
		if last {
			mb.trail = append([]byte{}, src[mb.valueEnd:end]...)
		} else {
			mb.trail = append(append([]byte{}, src[mb.valueEnd:sep]...), src[sep+1:end]...)
		}
		l.members = append(l.members, mb)
		prevEnd = end
	}
	l.closeLead = src[prevEnd:l.close]
	return l, true
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// render returns the file text for f, made by editing l's source, which
// parsed to orig. ok is false when the edit cannot express the change (the
// entries were reordered, the top-level fields changed): Marshal's fresh
// rendering is then the one to use.
func (l *layout) render(orig, f *File) (out []byte, ok bool) {
	if len(orig.Entries) != len(l.members) || !sameRaw(orig.Extra, f.Extra) {
		return nil, false
	}
	now := map[string]*Entry{}
	for _, e := range f.Entries {
		now[e.Name] = e
	}
	// Entries of orig that are still there must keep their order, first.
	var kept []string
	for i, e := range orig.Entries {
		if l.members[i].name != e.Name {
			return nil, false
		}
		if now[e.Name] != nil {
			kept = append(kept, e.Name)
		}
	}
	for i, name := range kept {
		if f.Entries[i].Name != name {
			return nil, false
		}
	}
	added := f.Entries[len(kept):]

	var b bytes.Buffer
	b.Write(l.src[:l.open+1])
	afterPiece, afterTrail := -1, -1 // offsets in b after the last kept member
	indent := []byte("    ")
	for i, m := range l.members {
		b.Write(m.lead)
		e := now[m.name]
		if e == nil {
			continue // removed: its indentation, text and same-line comment go
		}
		if afterPiece >= 0 {
			insertAt(&b, afterPiece, []byte{','})
		}
		b.Write(m.indent)
		if entryEqual(orig.Entries[i], e) {
			b.Write(l.src[m.start:m.valueEnd])
		} else {
			v, err := e.marshal()
			if err != nil {
				return nil, false
			}
			b.Write(l.src[m.start:m.valueStart])
			b.Write(v)
		}
		afterPiece = b.Len()
		b.Write(m.trail)
		afterTrail = b.Len()
		if at := m.start - len(m.indent) - 1; at >= 0 && l.src[at] == '\n' {
			indent = m.indent // the indentation of a line of its own
		}
	}
	if len(added) > 0 {
		var nb bytes.Buffer
		for j, e := range added {
			v, err := e.marshal()
			if err != nil {
				return nil, false
			}
			if j > 0 {
				nb.WriteString(",\n")
			}
			nb.Write(indent)
			nb.Write(mustJSON(e.Name))
			nb.WriteString(": ")
			nb.Write(v)
		}
		switch {
		case afterPiece < 0: // no member left: the new ones end the object
			lines := l.closeLead[:bytes.LastIndexByte(l.closeLead, '\n')+1]
			b.Write(lines)
			if b.Bytes()[b.Len()-1] != '\n' {
				b.WriteByte('\n')
			}
			nb.WriteByte('\n')
			b.Write(nb.Bytes())
			b.Write(l.closeLead[len(lines):])
			b.Write(l.src[l.close:])
			return b.Bytes(), true
		case bytes.HasSuffix(b.Bytes()[:afterTrail], []byte{'\n'}):
			nb.WriteByte('\n')
			insertAt(&b, afterTrail, nb.Bytes())
			insertAt(&b, afterPiece, []byte{','})
		default: // the last member ends its line with the brace
			insertAt(&b, afterPiece, append([]byte(",\n"), nb.Bytes()...))
		}
	}
	b.Write(l.closeLead)
	b.Write(l.src[l.close:])
	return b.Bytes(), true
}

// insertAt inserts p into b at offset at.
func insertAt(b *bytes.Buffer, at int, p []byte) {
	rest := append([]byte{}, b.Bytes()[at:]...)
	b.Truncate(at)
	b.Write(p)
	b.Write(rest)
}

// entryEqual reports whether two entries would be written the same.
func entryEqual(a, b *Entry) bool {
	if a.Name != b.Name || a.Clear != b.Clear || a.SHA256 != b.SHA256 || a.Role != b.Role ||
		!slices.Equal(a.Models, b.Models) || (a.Models == nil) != (b.Models == nil) ||
		!a.Created.Equal(b.Created) || !a.Expires.Equal(b.Expires) || a.Disabled != b.Disabled ||
		len(a.Previous) != len(b.Previous) || !sameJSON(a.Extra, b.Extra) || !policyEqual(a.Policy, b.Policy) {
		return false
	}
	for i := range a.Previous {
		if a.Previous[i].SHA256 != b.Previous[i].SHA256 || !a.Previous[i].Until.Equal(b.Previous[i].Until) {
			return false
		}
	}
	return true
}

// sameJSON compares unknown fields by meaning: a rewritten entry holds them
// compacted.
func sameJSON(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			return false
		}
		var cv, cw bytes.Buffer
		if json.Compact(&cv, v) != nil || json.Compact(&cw, w) != nil || !bytes.Equal(cv.Bytes(), cw.Bytes()) {
			return false
		}
	}
	return true
}

func sameRaw(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// edit renders f by editing src, the text orig was parsed from; when that
// cannot express the change, or its result would not read back as f, it
// falls back to Marshal.
func edit(src []byte, orig, f *File) ([]byte, error) {
	if l, ok := readLayout(src); ok {
		if out, ok := l.render(orig, f); ok {
			if back, _, err := Parse(out); err == nil && sameEntries(back, f) {
				return out, nil
			}
		}
	}
	return f.Marshal()
}

// sameEntries reports whether a and b hold the same entries in the same order.
func sameEntries(a, b *File) bool {
	if len(a.Entries) != len(b.Entries) {
		return false
	}
	for i := range a.Entries {
		x, y := *a.Entries[i], *b.Entries[i]
		if len(x.Models) == 0 && len(y.Models) == 0 {
			x.Models, y.Models = nil, nil
		}
		if x.Role == "" {
			x.Role = RoleUser
		}
		if y.Role == "" {
			y.Role = RoleUser
		}
		if !entryEqual(&x, &y) {
			return false
		}
	}
	return true
}
