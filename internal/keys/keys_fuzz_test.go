package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/glmctl/glmctl/internal/jsonc"
)

// fuzzFile is a keys file with every entry form: clear text, hashed,
// rotated, disabled, expired, admin, restricted to models.
var fuzzFile = `{
  # every form
  "api_keys": {
    "user1": "sk-abc123def456ghi789jkl012mno345pqr",
    "user2": {"sha256": "` + Hash("sk-user2-secret-key") + `", "role": "user", "models": ["glm-4.7-flash"],
              "created": "2026-11-25T10:00:00Z", "expires": "2027-01-01T00:00:00+01:00", "disabled": false,
              "previous": [{"sha256": "` + Hash("sk-user2-old-key-aa") + `", "until": "2026-11-26T10:00:00Z"}],
              "colour": "blue"},
    "admin": {"sha256": "` + strings.ToUpper(Hash("sk-admin-secret-key")) + `", "role": "admin"}, // upper-case hex
    "off": {"sha256": "` + Hash("sk-off-secret-key-x") + `", "disabled": true}
  },
  "version": 2
}`

// keysSeeds adds the tutorial's and the importer's keys files and the unit
// tests' documents.
func keysSeeds(add func(src []byte)) {
	for _, p := range []string{
		"../../testdata/tutorial/api_keys.json",
		"../../testdata/import/api_keys.json",
		"../../testdata/tutorial/rate_limits.json",
	} {
		if b, err := os.ReadFile(p); err == nil {
			add(b)
		}
	}
	for _, s := range []string{
		fuzzFile,
		"{\"api_keys\": {\n \"a\": {\"sha256\": \"xyz\"}}}",
		"{\"api_keys\": {\n\n \"a\": {\"sha256\": \"" + Hash("k") + "\", \"role\": \"root\"}}}",
		"{}",
		"{\"api_keys\": {\"a\": \"sk-same-key-1\",\n \"b\": \"sk-same-key-1\"}}",
		"{\"api_keys\": {\"a\": 5}}",
		`{"api_keys": {"user1": "sk-abc123def456ghi789", "u2": {"sha256": "` + Hash("sk-u2-u2-u2-u2") + `", "future": {"x": 1}}}, "meta": "m"}`,
		`{"api_keys": {"a": {"SHA256": "` + Hash("sk-case-folded-1") + `", "Disabled": true, "Previous": []}}}`,
		`{"api_keys": {"a": "short"}, "api_keys": {}}`,
		`{"api_keys": {"a": {"sha256": "` + Hash("sk-policy-1") + `", "policy": {"max_tokens": 500, "deny_params": ["tools"]}},
		  "b": {"sha256": "` + Hash("sk-policy-2") + `", "policy": {"max_token": 5, "deny_params": ["n", "n"]}}}}`,
	} {
		add([]byte(s))
	}
}

// messageVocabulary is text the parser's messages are made of, so a clear
// key that happens to be a piece of it is not taken for a leak.
const messageVocabulary = `unknown field ignored missing "api_keys" object given twice key defined twice
has the same secret as a key needs a non-empty name a key must be at least 8 characters
is stored in clear text; store its sha256 instead (glmctl keys hash) must be a string or an object
sha256 must be 64 hex digits role is not user or admin previous sha256 must be 64 hex digits
previous entry needs an "until" time the file must hold a JSON object unexpected end of file
unexpected data after the top-level value cannot use a JSON string number bool array object as
invalid character looking for beginning of value after object key:value pair in string literal
parsing time as "2006-01-02T15:04:05Z07:00": cannot parse extra text out of range []keys.Previous
time.Time []string bool string keys.entryJSON keys.Previous
policy must be an object such as {"max_tokens": 500} policy field given twice unknown policy field
the policy of a key takes "max_prompt_tokens", "max_tokens" and "deny_params" must be a whole number
from 1 to 1099511627776 (write e.g. "max_tokens": 500) deny_params must be a list of parameter names
such as ["tools", "logprobs"] lists twice cannot refuse no request does without it; refuse the route
or the model instead cap it with max_tokens = N instead invalid deny_params entry write a top-level
request parameter such as "logprobs" or "tools" max_completion_tokens messages prompt input model`

// documentStrings walks src's stripped text as far as it is valid JSON and
// returns the object member names, the string values directly under
// "api_keys" (clear-text keys) of at least 8 bytes, and the other string
// values.
func documentStrings(src []byte) (names, clear, values []string) {
	type frame struct {
		obj, keys bool   // an object; the "api_keys" object
		name      bool   // the next token is a member name
		key       string // the current member's name
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(jsonc.Strip(src)))
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].name = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return names, clear, values
		}
		var top *frame
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				fr := &frame{obj: v == '{', name: true}
				fr.keys = fr.obj && len(stack) == 1 && top.key == "api_keys"
				stack = append(stack, fr)
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			switch {
			case top != nil && top.obj && top.name:
				names = append(names, v)
				top.key, top.name = v, false
			case top != nil && top.keys && len(v) >= 8:
				clear = append(clear, v)
				valueDone()
			default:
				values = append(values, v)
				valueDone()
			}
		default:
			valueDone()
		}
	}
}

// checkNoSecret fails when text shows a clear-text key of the file that is
// not also a name, another value or a piece of the messages' wording.
func checkNoSecret(t *testing.T, src []byte, text string) {
	t.Helper()
	names, clear, values := documentStrings(src)
	for _, s := range clear {
		if !strings.Contains(text, s) || strings.Contains(messageVocabulary, s) {
			continue
		}
		innocent := false
		for _, o := range append(names, values...) {
			innocent = innocent || strings.Contains(o, s)
		}
		for _, o := range clear {
			innocent = innocent || (o != s && strings.Contains(o, s))
		}
		if !innocent {
			t.Fatalf("message shows a clear-text key %q:\n%s", s, text)
		}
	}
}

// checkLocated asserts that err is made of *jsonc.Error values whose
// line:col lies inside src.
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
	var je *jsonc.Error
	if !errors.As(err, &je) {
		t.Fatalf("error %q (%T) carries no line:col", err, err)
	}
	checkPos(t, src, je.Line, je.Col, err.Error())
}

func checkPos(t *testing.T, src []byte, line, col int, what string) {
	t.Helper()
	lines := bytes.Split(src, []byte{'\n'})
	if line < 1 || line > len(lines) || col < 1 || col > utf8.RuneCount(lines[line-1])+1 {
		t.Fatalf("%q: %d:%d is outside the document", what, line, col)
	}
}

// compactJSON returns raw decoded and re-encoded, for comparing kept
// unknown fields by meaning (json.Marshal escapes "&" as \u0026, say).
func compactJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("kept field %q is not JSON: %v", raw, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameEntry reports how a and b differ, or "".
func sameEntry(t *testing.T, a, b *Entry) string {
	switch {
	case a.Name != b.Name:
		return "name"
	case a.Clear != b.Clear:
		return "clear key"
	case a.SHA256 != b.SHA256:
		return "sha256"
	case a.Role != b.Role:
		return "role"
	case !reflect.DeepEqual(a.Models, b.Models) && (len(a.Models) != 0 || len(b.Models) != 0):
		return "models"
	case !a.Created.Equal(b.Created):
		return "created"
	case !a.Expires.Equal(b.Expires):
		return "expires"
	case a.Disabled != b.Disabled:
		return "disabled"
	case len(a.Previous) != len(b.Previous):
		return "previous"
	case len(a.Extra) != len(b.Extra):
		return "unknown fields"
	}
	for i := range a.Previous {
		if a.Previous[i].SHA256 != b.Previous[i].SHA256 || !a.Previous[i].Until.Equal(b.Previous[i].Until) {
			return "previous"
		}
	}
	for k, v := range a.Extra {
		if w, ok := b.Extra[k]; !ok || compactJSON(t, v) != compactJSON(t, w) {
			return "unknown field " + k
		}
	}
	return ""
}

// FuzzParse: Parse is deterministic; a file that fails is refused with
// located errors; warnings are located; no message shows a clear-text key;
// a file that parses satisfies the file's invariants, and round-trips
// through Marshal (the writer of `glmctl keys …`) to the same entries,
// the same unknown fields and the same answers to lookups, Marshal's output
// being a fixed point.
func FuzzParse(f *testing.F) {
	keysSeeds(func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, src []byte) {
		file, warns, err := Parse(src)
		file2, warns2, err2 := Parse(src)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) || !reflect.DeepEqual(warns, warns2) ||
			(file != nil && !reflect.DeepEqual(file, file2)) {
			t.Fatalf("Parse is not deterministic: %v / %v", err, err2)
		}
		var text strings.Builder
		for _, w := range warns {
			checkPos(t, src, w.Line, w.Col, w.String())
			text.WriteString(w.String() + "\n")
		}
		if err != nil {
			if file != nil {
				t.Fatal("Parse returned a file with an error")
			}
			checkLocated(t, src, err)
			checkNoSecret(t, src, text.String()+err.Error())
			return
		}
		checkNoSecret(t, src, text.String())

		// The invariants Parse promises to NewSet and Marshal.
		names := map[string]bool{}
		hashes := map[string]string{}
		for _, e := range file.Entries {
			if e.Name == "" || names[e.Name] {
				t.Fatalf("empty or repeated name %q", e.Name)
			}
			names[e.Name] = true
			if e.Role != RoleUser && e.Role != RoleAdmin {
				t.Fatalf("key %q: role %q", e.Name, e.Role)
			}
			if e.Clear != "" {
				if len(e.Clear) < 8 || e.SHA256 != "" || len(e.Previous) > 0 {
					t.Fatalf("key %q: clear entry with other fields", e.Name)
				}
			} else if !isHash(e.SHA256) || strings.ToLower(e.SHA256) != e.SHA256 {
				t.Fatalf("key %q: sha256 %q", e.Name, e.SHA256)
			}
			for _, p := range e.Previous {
				if !isHash(p.SHA256) || strings.ToLower(p.SHA256) != p.SHA256 || p.Until.IsZero() {
					t.Fatalf("key %q: previous %+v", e.Name, p)
				}
			}
			for _, h := range e.hashes() {
				if other, dup := hashes[h]; dup {
					t.Fatalf("keys %q and %q share a secret", other, e.Name)
				}
				hashes[h] = e.Name
			}
		}

		// Round trip through the writer.
		out, err := file.Marshal()
		if err != nil {
			t.Fatalf("a file that parses does not marshal: %v", err)
		}
		back, _, err := Parse(out)
		if err != nil {
			t.Fatalf("Marshal wrote a file that does not parse: %v\n%s", err, out)
		}
		if len(back.Entries) != len(file.Entries) {
			t.Fatalf("round trip: %d entries, want %d\n%s", len(back.Entries), len(file.Entries), out)
		}
		for i, e := range file.Entries {
			if diff := sameEntry(t, e, back.Entries[i]); diff != "" {
				t.Fatalf("round trip changed key %q: %s\n%s", e.Name, diff, out)
			}
		}
		if len(back.Extra) != len(file.Extra) {
			t.Fatalf("round trip: unknown top-level fields %v, want %v", back.Extra, file.Extra)
		}
		for k, v := range file.Extra {
			if compactJSON(t, back.Extra[k]) != compactJSON(t, v) {
				t.Fatalf("round trip changed top-level field %q", k)
			}
		}
		again, err := back.Marshal()
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Marshal is not a fixed point (%v):\n%s\n---\n%s", err, out, again)
		}

		// Same answers from both sets, for each clear key and each hash's
		// owner at a few instants.
		s1, s2 := NewSet(file), NewSet(back)
		if s1.Len() != len(file.Entries) || s2.Len() != s1.Len() {
			t.Fatalf("set sizes %d, %d for %d entries", s1.Len(), s2.Len(), len(file.Entries))
		}
		for _, e := range file.Entries {
			if !s1.Has(e.Name) || !s2.Has(e.Name) {
				t.Fatalf("set lacks %q", e.Name)
			}
			if e.Clear == "" {
				continue
			}
			for _, now := range []time.Time{{}, time.Unix(1<<40, 0)} {
				k1, err1 := s1.Lookup(e.Clear, now)
				k2, err2 := s2.Lookup(e.Clear, now)
				if err1 != err2 || (k1 == nil) != (k2 == nil) || (k1 != nil && k1.Name != k2.Name) {
					t.Fatalf("lookup of %q's key differs after the round trip: %v / %v", e.Name, err1, err2)
				}
			}
		}
	})
}

// lookupRef is what Lookup must answer for secret at now, worked out from
// the entries themselves: the owner of the secret (also with ErrDisabled or
// ErrExpired), or nil and ErrUnknown.
func lookupRef(file *File, secret string, now time.Time) (*Entry, error) {
	h := Hash(secret)
	for _, e := range file.Entries {
		if (e.Clear != "" && e.Clear == secret) || (e.Clear == "" && e.SHA256 == h) {
			switch {
			case e.Disabled:
				return e, ErrDisabled
			case !e.Expires.IsZero() && !now.Before(e.Expires):
				return e, ErrExpired
			}
			return e, nil
		}
		for _, p := range e.Previous {
			if p.SHA256 == h {
				switch {
				case e.Disabled:
					return e, ErrDisabled
				case !e.Expires.IsZero() && !now.Before(e.Expires), !now.Before(p.Until):
					return e, ErrExpired
				}
				return e, nil
			}
		}
	}
	return nil, ErrUnknown
}

// FuzzLookup: for any keys file (the fixture when the input does not
// parse), any presented secret and any instant, Set.Lookup gives what the
// entries say: the owner of the secret's hash (current or rotated) with its
// role and models, with ErrDisabled or ErrExpired when it may not be used,
// or no key and ErrUnknown (errors are those values, so they never show the
// secret); Mask never shows most of a key.
func FuzzLookup(f *testing.F) {
	add := func(src []byte) {
		for _, s := range []string{"sk-abc123def456ghi789jkl012mno345pqr", "sk-user2-secret-key", "sk-user2-old-key-aa", "sk-admin-secret-key", "sk-off-secret-key-x", "", "sk-wrong", "sk-user2-secret-kez"} {
			f.Add(src, s, int64(1795000000))
		}
	}
	keysSeeds(add)
	fallback, _, err := Parse([]byte(fuzzFile))
	if err != nil {
		f.Fatalf("fixture: %v", err)
	}
	f.Fuzz(func(t *testing.T, src []byte, secret string, unix int64) {
		file, _, err := Parse(src)
		if err != nil {
			file = fallback
		}
		now := time.Unix(unix%(1<<40), 0)
		s := NewSet(file)
		secrets := []string{secret, secret + "x", strings.ToUpper(secret)}
		for _, e := range file.Entries {
			if e.Clear != "" {
				secrets = append(secrets, e.Clear, e.Clear[:len(e.Clear)-1])
			}
		}
		for _, sec := range secrets {
			k, err := s.Lookup(sec, now)
			want, wantErr := lookupRef(file, sec, now)
			if err != wantErr {
				t.Fatalf("Lookup err = %v, want %v", err, wantErr)
			}
			if (k == nil) != (want == nil) {
				t.Fatalf("Lookup = %+v, %v; want entry %+v", k, err, want)
			}
			if k == nil {
				continue
			}
			if k.Name != want.Name || k.Role != want.Role || !reflect.DeepEqual(k.Models, want.Models) ||
				k.Clear != (want.Clear != "") || k.IsAdmin() != (want.Role == RoleAdmin) || !k.Expires.Equal(want.Expires) {
				t.Fatalf("Lookup = %+v, want entry %+v", k, want)
			}
			if k.AllowsModel("glm-4.7-flash") != (len(want.Models) == 0 || contains(want.Models, "glm-4.7-flash")) {
				t.Fatalf("AllowsModel disagrees with models %v", want.Models)
			}
		}
		m := Mask(secret)
		if len(secret) < 16 && m != "…" {
			t.Fatalf("Mask of a short key shows %q", m)
		}
		if len(secret) >= 16 && len(m)-len("…") > 9 {
			t.Fatalf("Mask shows %d bytes", len(m)-len("…"))
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestCaseFoldedAndRepeatedFields is the regression test of a FuzzParse
// finding: "SHA256", "Previous" or "Disabled" were warned about as unknown
// and ignored but encoding/json used them (case-insensitively), and Save,
// which writes them next to the real fields, could bring a rotated-out key
// back; a repeated field silently took the last value.
func TestCaseFoldedAndRepeatedFields(t *testing.T) {
	cur, old := Hash("sk-current-secret-1"), Hash("sk-old-secret-xyz-1")
	src := `{"api_keys": {"a": {"sha256": "` + cur + `", "Previous": [{"sha256": "` + old + `", "until": "2099-01-01T00:00:00Z"}], "previous": [], "Disabled": true}}}`
	f, warns, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 2 || len(f.Entries[0].Previous) != 0 || f.Entries[0].Disabled {
		t.Fatalf("case-folded fields were used: %+v %v", f.Entries[0], warns)
	}
	out, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := NewSet(back).Lookup("sk-old-secret-xyz-1", now); !errors.Is(err, ErrUnknown) {
		t.Fatalf("after a rewrite the rotated-out key is back: %v\n%s", err, out)
	}
	if _, err := NewSet(back).Lookup("sk-current-secret-1", now); err != nil {
		t.Fatalf("after a rewrite the key is refused: %v\n%s", err, out)
	}

	// A field that is only a case variant is not used.
	f, _, err = Parse([]byte(`{"api_keys": {"a": {"SHA256": "` + cur + `"}}}`))
	if err == nil || !strings.Contains(err.Error(), "sha256 must be 64 hex digits") {
		t.Fatalf("SHA256 taken for sha256: %v %+v", err, f)
	}

	// Repeated fields and sections are errors, not "the last one wins".
	for _, src := range []string{
		`{"api_keys": {"a": {"sha256": "` + cur + `", "disabled": true, "disabled": false}}}`,
		`{"api_keys": {"a": "sk-first-key-1"}, "api_keys": {}}`,
	} {
		if _, _, err := Parse([]byte(src)); err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Fatalf("%s: err = %v, want a repeated-field error", src, err)
		}
	}
}

// FuzzEdit: `glmctl keys …` writes by editing the file's text (edit, with
// Marshal as its fallback). For any file that parses and any sequence of
// the edits the commands make (remove, rotate with or without grace, add,
// revoke, hash clear keys, replace), the written text parses to exactly the
// edited entries and the same top-level fields; an edit that changes
// nothing gives back the file byte for byte when its layout was understood.
func FuzzEdit(f *testing.F) {
	keysSeeds(func(b []byte) {
		f.Add(b, []byte{})
		f.Add(b, []byte{0, 7, 14, 21, 28, 35})
		f.Add(b, []byte{2, 2, 6})
	})
	f.Fuzz(func(t *testing.T, src, ops []byte) {
		orig, _, err := Parse(src)
		if err != nil {
			return
		}
		file, _, _ := Parse(src)
		if len(ops) == 0 {
			out, err := edit(src, orig, file)
			if err != nil {
				t.Fatalf("no-op edit: %v", err)
			}
			if _, ok := readLayout(src); ok && !bytes.Equal(out, src) {
				t.Fatalf("no-op edit changed the text:\n%s\n---\n%s", src, out)
			}
		}
		now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		for i, b := range ops {
			if i >= 16 {
				break
			}
			var name string
			if n := len(file.Entries); n > 0 {
				name = file.Entries[int(b/8)%n].Name
			}
			secret := "sk-fuzz-edit-secret-" + string(rune('a'+i))
			switch b % 8 {
			case 0:
				file.Remove(name)
			case 1:
				_ = file.Rotate(name, secret, now.Add(time.Hour), now)
			case 2:
				_ = file.Add(&Entry{Name: "new-" + secret, SHA256: Hash(secret), Created: now, Models: []string{"m"}})
			case 3:
				_, _ = file.Revoke(name)
			case 4:
				file.HashClear()
			case 5:
				_, _ = file.Replace(&Entry{Name: name, SHA256: Hash(secret), Role: RoleAdmin, Expires: now.Add(24 * time.Hour)})
			case 6:
				_ = file.Rotate(name, secret, time.Time{}, now)
			case 7:
				if e := file.Entry(name); e != nil && e.Clear == "" { // a clear key is a bare string
					e.Extra = map[string]json.RawMessage{"note": json.RawMessage(`"edited"`)}
				}
			}
		}
		out, err := edit(src, orig, file)
		if err != nil {
			if _, merr := file.Marshal(); merr == nil {
				t.Fatalf("edit failed where Marshal succeeds: %v", err)
			}
			return // an edit that cannot be written (two keys with one secret)
		}
		back, _, err := Parse(out)
		if err != nil {
			t.Fatalf("edited file does not parse: %v\n%s", err, out)
		}
		if len(back.Entries) != len(file.Entries) {
			t.Fatalf("edited file has %d entries, want %d\n%s", len(back.Entries), len(file.Entries), out)
		}
		for i, e := range file.Entries {
			if diff := sameEntry(t, e, back.Entries[i]); diff != "" {
				t.Fatalf("edited file changed key %q: %s\n%s", e.Name, diff, out)
			}
		}
		if len(back.Extra) != len(orig.Extra) {
			t.Fatalf("edit changed the top-level fields\n%s", out)
		}
		for k, v := range orig.Extra {
			if compactJSON(t, back.Extra[k]) != compactJSON(t, v) {
				t.Fatalf("edit changed top-level field %q", k)
			}
		}
	})
}
