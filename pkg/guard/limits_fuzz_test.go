package guard_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/glmctl/glmctl/internal/jsonc"
	"github.com/glmctl/glmctl/pkg/guard"
)

// limitsFuzzPos checks that line:col lies inside src.
func limitsFuzzPos(t *testing.T, src []byte, line, col int, what string) {
	t.Helper()
	lines := bytes.Split(src, []byte{'\n'})
	if line < 1 || line > len(lines) || col < 1 || col > utf8.RuneCount(lines[line-1])+1 {
		t.Fatalf("%q: %d:%d is outside the document", what, line, col)
	}
}

// limitsFuzzLocated checks that err is made of *jsonc.Error values located
// inside src.
func limitsFuzzLocated(t *testing.T, src []byte, err error) {
	t.Helper()
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			limitsFuzzLocated(t, src, e)
		}
		return
	}
	var je *jsonc.Error
	if !errors.As(err, &je) {
		t.Fatalf("error %q (%T) carries no line:col", err, err)
	}
	limitsFuzzPos(t, src, je.Line, je.Col, err.Error())
}

var limitsFuzzWarning = regexp.MustCompile(`^([0-9]+):([0-9]+): `)

// limitsFuzzMarshal writes l as a limits file.
func limitsFuzzMarshal(t *testing.T, l *guard.Limits) []byte {
	t.Helper()
	type lim struct {
		RPM         int64 `json:"rpm"`
		TPM         int64 `json:"tpm"`
		Concurrency int64 `json:"concurrency"`
	}
	m := map[string]lim{"default": lim(l.Default)}
	for k, v := range l.PerKey {
		m[k] = lim(v)
	}
	b, err := json.Marshal(map[string]any{"rate_limits": m})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzParseLimits: ParseLimits is deterministic; a refused file gets
// errors located inside it (and warnings too); an accepted one has no
// negative limit, no rpm above what the store supports, per-key entries
// only for names the file has, For that falls back to the default, the
// same meaning after a trailing comment, and the same limits once written
// back as plain JSON and parsed again.
func FuzzParseLimits(f *testing.F) {
	if b, err := os.ReadFile("../../testdata/tutorial/rate_limits.json"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		`{"rate_limits": {"default": {"rpm": 60}, "u": {"tpm": 5, "burst": 3}}}`,
		"{\"rate_limits\": {\n\"u\": {\"rpm\": -1}}}",
		"{\"rate_limits\": {\n\"u\": {\"rpm\": \"ten\"}}}",
		"{\"rate_limits\": {\"u\": 3}}",
		"{\"limits\": {}}",
		"{\"rate_limits\": {\n \"u\": {\"rpm\": 1,}}}",
		`{"rate_limits": {"default": {"rpm": 60, "tpm": 60000}, "user1": {"rpm": 120, "tpm": 120000, "concurrency": 8}, "user2": {"rpm": 30, "tpm": 30000}}}`,
		`{"rate_limits": {"u": {"rpm": 60000000001}, "v": {"concurrency": 9223372036854775807}}, "x": 1}`,
		`{"rate_limits": {"u": {"rpm": 1}, "u": {"rpm": 2}}}`,
		`{"rate_limits": {"u": {"rpm": 60, "RPM": 0}}, "rate_limits": {}}`,
	} {
		f.Add([]byte(s))
	}
	maxRPM := int64(time.Minute) // the store's window is a minute in nanoseconds
	f.Fuzz(func(t *testing.T, src []byte) {
		l, warns, err := guard.ParseLimits(src)
		l2, warns2, err2 := guard.ParseLimits(src)
		if !reflect.DeepEqual(l, l2) || !reflect.DeepEqual(warns, warns2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("ParseLimits is not deterministic: %v / %v", err, err2)
		}
		for _, w := range warns {
			m := limitsFuzzWarning.FindStringSubmatch(w)
			if m == nil {
				t.Fatalf("warning %q has no line:col", w)
			}
			line, _ := strconv.Atoi(m[1])
			col, _ := strconv.Atoi(m[2])
			limitsFuzzPos(t, src, line, col, w)
		}
		if err != nil {
			if l != nil {
				t.Fatal("limits returned with an error")
			}
			limitsFuzzLocated(t, src, err)
			return
		}
		if l == nil {
			t.Fatal("no limits and no error")
		}
		check := func(name string, v guard.Limit) {
			if v.RPM < 0 || v.TPM < 0 || v.Concurrency < 0 {
				t.Fatalf("%q: negative limit %+v", name, v)
			}
			if v.RPM > maxRPM {
				t.Fatalf("%q: rpm %d above %d", name, v.RPM, maxRPM)
			}
		}
		check("default", l.Default)
		if _, ok := l.PerKey["default"]; ok {
			t.Fatal(`"default" is in PerKey`)
		}
		// Names come from the file's "rate_limits" object.
		doc := jsonc.NewDoc(src)
		root, rerr := doc.Root()
		if rerr != nil {
			t.Fatalf("accepted file does not parse as a document: %v", rerr)
		}
		names := map[string]bool{}
		for _, m := range root {
			if m.Name != "rate_limits" {
				continue
			}
			ms, merr := doc.Members(m)
			if merr != nil {
				t.Fatalf("accepted file's rate_limits: %v", merr)
			}
			for _, e := range ms {
				names[e.Name] = true
			}
		}
		for name, v := range l.PerKey {
			check(name, v)
			if !names[name] {
				t.Fatalf("limits for %q, which the file does not name", name)
			}
			if l.For(name) != v {
				t.Fatalf("For(%q) = %+v, want %+v", name, l.For(name), v)
			}
		}
		if _, ok := l.PerKey["\x00not-a-key"]; !ok && l.For("\x00not-a-key") != l.Default {
			t.Fatal("For of an unnamed key is not the default")
		}
		var nilLimits *guard.Limits
		if nilLimits.For("x") != (guard.Limit{}) {
			t.Fatal("nil limits are not unlimited")
		}

		// A trailing comment changes nothing.
		lc, _, cerr := guard.ParseLimits(append(bytes.Clone(src), "\n# trailing comment\n// and another"...))
		if cerr != nil || !reflect.DeepEqual(lc, l) {
			t.Fatalf("a trailing comment changed the result: %v", cerr)
		}

		// Written back as plain JSON, the same limits.
		out := limitsFuzzMarshal(t, l)
		back, _, berr := guard.ParseLimits(out)
		if berr != nil {
			t.Fatalf("limits written back do not parse: %v\n%s", berr, out)
		}
		if back.Default != l.Default || len(back.PerKey) != len(l.PerKey) {
			t.Fatalf("round trip changed the limits:\n%s", out)
		}
		for k, v := range l.PerKey {
			if back.PerKey[k] != v {
				t.Fatalf("round trip changed %q: %+v -> %+v", k, v, back.PerKey[k])
			}
		}
	})
}
