package jsonc

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"unicode/utf8"
)

// fuzzSeeds adds the tutorial's files and the inline documents of the unit
// tests, so the fuzzers start from files that people actually write.
func fuzzSeeds(f *testing.F) {
	for _, p := range []string{
		"../../testdata/tutorial/api_keys.json",
		"../../testdata/tutorial/rate_limits.json",
		"../../testdata/import/api_keys.json",
	} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"{\"a#b\": \"x//y\", # c1\n \"n\": 1 // c2\n}",
		`{"k": "a\"#not a comment", "m": 2} # tail`,
		"{ # 注释 comment\n  \"a\": 1,\n  \"b\" 2\n}",
		"{\n \"n\": \"x\"\n}",
		"{\n \"n\": 1",
		"{}\n}",
		"{\"é\": 1 # ü\n,}",
		"{\"a\": {\"b\": [1, {\"c\": null}], \"d\": {}}, \"e\": \"\\u00e9\\n\"}\r\n",
		"[1, 2]",
		"",
		"// only a comment",
		"\"unterminated\n# x\"",
	} {
		f.Add([]byte(s))
	}
}

// lineRunes returns, for each 1-based line of src, its length in runes as
// Position counts them (invalid UTF-8 bytes count one each).
func lineRunes(src []byte) []int {
	var out []int
	for _, l := range bytes.Split(src, []byte{'\n'}) {
		out = append(out, utf8.RuneCount(l))
	}
	return out
}

// checkLocated asserts that err is made only of *Error values (joined or
// not) whose line:col lies inside src: a line that exists and a column at
// most one past that line's last character.
func checkLocated(t *testing.T, src []byte, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			checkLocated(t, src, e)
		}
		return
	}
	var je *Error
	if !errors.As(err, &je) {
		t.Fatalf("error %q (%T) carries no line:col", err, err)
	}
	lines := lineRunes(src)
	if je.Line < 1 || je.Line > len(lines) {
		t.Fatalf("error %q: line %d outside 1..%d", err, je.Line, len(lines))
	}
	if je.Col < 1 || je.Col > lines[je.Line-1]+1 {
		t.Fatalf("error %q: column %d outside 1..%d of line %d", err, je.Col, lines[je.Line-1]+1, je.Line)
	}
}

// FuzzUnmarshal: Strip keeps length, newlines and every byte it does not
// blank; it is idempotent; Position stays inside the text; Unmarshal agrees
// with encoding/json on the stripped text and locates every error inside
// the document.
func FuzzUnmarshal(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		orig := bytes.Clone(src)
		clean := Strip(src)
		if !bytes.Equal(src, orig) {
			t.Fatal("Strip modified its input")
		}
		if len(clean) != len(src) {
			t.Fatalf("Strip changed the length: %d -> %d", len(src), len(clean))
		}
		for i := range src {
			if clean[i] != src[i] && clean[i] != ' ' {
				t.Fatalf("byte %d: %q became %q, not a space", i, src[i], clean[i])
			}
			if src[i] == '\n' && clean[i] != '\n' {
				t.Fatalf("newline at %d blanked", i)
			}
		}
		if again := Strip(clean); !bytes.Equal(again, clean) {
			t.Fatalf("Strip not idempotent:\n%q\n%q", clean, again)
		}

		lines := lineRunes(src)
		for _, off := range []int64{-1, 0, int64(len(src) / 2), int64(len(src)), int64(len(src)) + 5} {
			l, c := Position(src, off)
			if l < 1 || l > len(lines) || c < 1 || c > lines[l-1]+1 {
				t.Fatalf("Position(%d) = %d:%d outside the text", off, l, c)
			}
		}

		var raw json.RawMessage
		err := Unmarshal(src, &raw)
		checkLocated(t, src, err)
		valid := json.Valid(clean)
		if (err == nil) != valid {
			t.Fatalf("Unmarshal err = %v but json.Valid(stripped) = %v", err, valid)
		}
		if err == nil && !bytes.Equal(raw, bytes.Trim(clean, " \t\r\n")) {
			t.Fatalf("Unmarshal yields %q for stripped text %q", raw, clean)
		}
		// Decoding into any can fail (a number beyond float64), located.
		var v any
		checkLocated(t, src, Unmarshal(src, &v))

		// Type errors are located too.
		var typed struct {
			N  int               `json:"n"`
			S  string            `json:"s"`
			A  []uint8           `json:"a"`
			M  map[string]bool   `json:"m"`
			RM []json.RawMessage `json:"rm"`
		}
		checkLocated(t, src, Unmarshal(src, &typed))
		var n uint
		checkLocated(t, src, Unmarshal(src, &n))
	})
}

// FuzzDoc: Root/Members/Decode of any document either fail with a located
// error or yield members whose offsets point at their name's opening quote
// and their value's first byte, names that decode from there, and values
// that are the bytes found there; walking nested objects keeps it so.
func FuzzDoc(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		d := NewDoc(src)
		clean := Strip(src)
		root, err := d.Root()
		checkLocated(t, src, err)
		if err != nil {
			if root != nil {
				t.Fatal("Root returned members with an error")
			}
			return
		}
		var walk func(ms []Member, depth int)
		walk = func(ms []Member, depth int) {
			for _, m := range ms {
				if m.Offset < 0 || m.Offset >= int64(len(src)) || clean[m.Offset] != '"' {
					t.Fatalf("member %q: Offset %d is not at its name's opening quote", m.Name, m.Offset)
				}
				var name string
				if err := json.NewDecoder(bytes.NewReader(clean[m.Offset:])).Decode(&name); err != nil || name != m.Name {
					t.Fatalf("member %q: name at Offset %d decodes to %q (%v)", m.Name, m.Offset, name, err)
				}
				if m.ValueOffset <= m.Offset || m.ValueOffset >= int64(len(src)) {
					t.Fatalf("member %q: ValueOffset %d outside (%d, %d)", m.Name, m.ValueOffset, m.Offset, len(src))
				}
				if !bytes.HasPrefix(clean[m.ValueOffset:], m.Value) || len(m.Value) == 0 {
					t.Fatalf("member %q: value %q is not the text at ValueOffset %d", m.Name, m.Value, m.ValueOffset)
				}
				if !json.Valid(m.Value) {
					t.Fatalf("member %q: value %q is not valid JSON", m.Name, m.Value)
				}
				// Errorf and Decode always locate inside the document.
				checkLocated(t, src, d.Errorf(m.ValueOffset, "x"))
				var s struct {
					A int    `json:"a"`
					B string `json:"b"`
				}
				checkLocated(t, src, d.Decode(m, &s))
				var i int8
				checkLocated(t, src, d.Decode(m, &i))
				var anyv any
				if err := d.Decode(m, &anyv); err != nil {
					t.Fatalf("member %q: valid value does not decode into any: %v", m.Name, err)
				}
				sub, err := d.Members(m)
				checkLocated(t, src, err)
				isObj := m.Value[0] == '{'
				if (err == nil) != isObj {
					t.Fatalf("member %q: Members err = %v for value %q", m.Name, err, m.Value)
				}
				if err == nil && depth < 16 {
					walk(sub, depth+1)
				}
			}
		}
		walk(root, 0)
		// Root's members are exactly the top-level object's, in order.
		dec := json.NewDecoder(bytes.NewReader(clean))
		if _, err := dec.Token(); err != nil {
			t.Fatalf("valid document: %v", err)
		}
		n := 0
		for ; dec.More(); n++ {
			i := n
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			if i >= len(root) || root[i].Name != tok.(string) || !bytes.Equal(root[i].Value, raw) {
				t.Fatalf("member %d: Root does not match encoding/json's walk (%q)", i, tok)
			}
		}
		if n != len(root) {
			t.Fatalf("Root has %d members, encoding/json sees %d", len(root), n)
		}
	})
}

// TestPositionInsideCharacter is the regression test of a FuzzUnmarshal
// finding: an offset inside a multi-byte character gave a column one or two
// past it (past the end of the line for its last character).
func TestPositionInsideCharacter(t *testing.T) {
	src := []byte("ab求\nx")
	for off, want := range map[int64]int{2: 3, 3: 3, 4: 3, 5: 4} {
		if l, c := Position(src, off); l != 1 || c != want {
			t.Errorf("Position(%d) = %d:%d, want 1:%d", off, l, c, want)
		}
	}
	if l, c := Position(src, 6); l != 2 || c != 1 {
		t.Errorf("Position(6) = %d:%d, want 2:1", l, c)
	}
	// Invalid UTF-8 still counts one column per byte.
	if l, c := Position([]byte("a\xff\xfeb"), 3); l != 1 || c != 4 {
		t.Errorf("invalid bytes: %d:%d, want 1:4", l, c)
	}
}
