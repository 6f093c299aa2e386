package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/jsonc"
)

func TestTutorialFileLoadsWithWarnings(t *testing.T) {
	src, err := os.ReadFile("../../testdata/tutorial/api_keys.json")
	if err != nil {
		t.Fatal("tutorial fixture:", err)
	}
	f, warns, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(f.Entries), 3; got != want {
		t.Fatalf("entries = %d, want %d", got, want)
	}
	if got, want := len(warns), 3; got != want {
		t.Fatalf("warnings = %d, want %d: %v", got, want, warns)
	}
	for _, w := range warns {
		if strings.Contains(w.Msg, "sk-") {
			t.Fatalf("warning leaks a key: %s", w)
		}
	}
	s := NewSet(f)
	k, err := s.Lookup("sk-abc123def456ghi789jkl012mno345pqr", time.Now())
	if err != nil || k.Name != "user1" || k.Role != RoleUser {
		t.Fatalf("lookup = %+v, %v", k, err)
	}
	if _, err := s.Lookup("sk-wrong", time.Now()); !errors.Is(err, ErrUnknown) {
		t.Fatalf("wrong key: err = %v, want ErrUnknown", err)
	}
}

func TestObjectForm(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	src := `{
  // the object form
  "api_keys": {
    "user2": {"sha256": "` + Hash("sk-user2-secret-key") + `", "role": "user", "models": ["glm-4.7-flash"],
              "created": "2026-11-25T10:00:00Z", "expires": "2027-01-01T00:00:00Z", "disabled": false,
              "previous": [{"sha256": "` + Hash("sk-user2-old-key-aa") + `", "until": "2026-11-26T10:00:00Z"},
                           {"sha256": "` + Hash("sk-user2-older-key-") + `", "until": "2026-11-20T10:00:00Z"}],
              "colour": "blue"},
    "admin": {"sha256": "` + strings.ToUpper(Hash("sk-admin-secret-key")) + `", "role": "admin"}, # upper-case hex is fine
    "gone": {"sha256": "` + Hash("sk-gone-secret-key-") + `", "expires": "2026-01-01T00:00:00Z"},
    "off": {"sha256": "` + Hash("sk-off-secret-key-x") + `", "disabled": true}
  },
  "version": 2
}`
	f, warns, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 2 {
		t.Fatalf("warnings = %v, want unknown colour and version", warns)
	}
	s := NewSet(f)
	cases := []struct {
		secret string
		name   string
		err    error
	}{
		{"sk-user2-secret-key", "user2", nil},
		{"sk-user2-old-key-aa", "user2", nil},
		{"sk-user2-older-key-", "", ErrExpired},
		{"sk-admin-secret-key", "admin", nil},
		{"sk-gone-secret-key-", "", ErrExpired},
		{"sk-off-secret-key-x", "", ErrDisabled},
		{"", "", ErrUnknown},
	}
	for _, tc := range cases {
		k, err := s.Lookup(tc.secret, now)
		if !errors.Is(err, tc.err) {
			t.Fatalf("%s: err = %v, want %v", Mask(tc.secret), err, tc.err)
		}
		if err == nil && k.Name != tc.name {
			t.Fatalf("%s: name = %q, want %q", Mask(tc.secret), k.Name, tc.name)
		}
	}
	k, _ := s.Lookup("sk-user2-secret-key", now)
	if !k.AllowsModel("glm-4.7-flash") || k.AllowsModel("other") {
		t.Fatal("models allowlist not applied")
	}
}

func TestInvalidFilesReportLineCol(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"syntax", "{\"api_keys\": {\n \"a\": \"sk-aaaaaaaaaa\"\n \"b\": 1}}", "3:2:"},
		{"bad hash", "{\"api_keys\": {\n \"a\": {\"sha256\": \"xyz\"}}}", `2:7: key "a": sha256 must be 64 hex digits`},
		{"bad role", "{\"api_keys\": {\n\n \"a\": {\"sha256\": \"" + Hash("k") + "\", \"role\": \"root\"}}}", `3:7: key "a": role "root"`},
		{"missing", "{}", `missing "api_keys"`},
		{"duplicate secret", "{\"api_keys\": {\"a\": \"sk-same-key-1\",\n \"b\": \"sk-same-key-1\"}}", `2:2: key "b" has the same secret as key "a"`},
		{"number", "{\"api_keys\": {\"a\": 5}}", `key "a" must be a string or an object`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			var je *jsonc.Error
			if !errors.As(err, &je) {
				t.Fatalf("err %T is not a *jsonc.Error", err)
			}
		})
	}
}

func TestSaveRoundTripKeepsModeAndFields(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api_keys.json")
	orig := `{"api_keys": {"user1": "sk-abc123def456ghi789", "u2": {"sha256": "` + Hash("sk-u2-u2-u2-u2") + `", "future": {"x": 1}}}, "meta": "m"}`
	if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	f, _, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	f.Entries = append(f.Entries, &Entry{Name: "new", SHA256: Hash(secret), Role: RoleAdmin, Created: time.Now().UTC().Truncate(time.Second)})
	if err := Save(path, f); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Mode().Perm(), os.FileMode(0o640); got != want {
		t.Fatalf("mode = %v, want %v", got, want)
	}
	g, _, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if g.Entry("user1").Clear != "sk-abc123def456ghi789" {
		t.Fatal("clear-text entry not kept")
	}
	if string(g.Entry("u2").Extra["future"]) != `{"x":1}` || string(g.Extra["meta"]) != `"m"` {
		t.Fatalf("unknown fields not kept: %v %v", g.Entry("u2").Extra, g.Extra)
	}
	k, err := NewSet(g).Lookup(secret, time.Now())
	if err != nil || k.Name != "new" || !k.IsAdmin() {
		t.Fatalf("new key lookup = %+v, %v", k, err)
	}
	// A file that would not parse is never written.
	g.Entries = append(g.Entries, &Entry{Name: "bad", SHA256: "nope"})
	if err := Save(path, g); err == nil {
		t.Fatal("saved an invalid file")
	}
	if _, _, err := ReadFile(path); err != nil {
		t.Fatalf("file damaged by a refused save: %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(matches) != 0 {
		t.Fatalf("temporary files left: %v", matches)
	}
}

func TestMaskAndNewSecret(t *testing.T) {
	if got, want := Mask("sk-abcdefghijklmnopqr901"), "sk-ab…r901"; got != want {
		t.Fatalf("Mask = %q, want %q", got, want)
	}
	if got := Mask("short"); got != "…" {
		t.Fatalf("Mask(short) = %q", got)
	}
	a, _ := NewSecret()
	b, _ := NewSecret()
	if a == b || len(a) != 3+SecretLen || !strings.HasPrefix(a, "sk-") {
		t.Fatalf("NewSecret = %q, %q", a, b)
	}
}

func TestEditRotateKeepsOldKeyForGrace(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f, _, err := Parse([]byte(`{"api_keys": {"bob": "sk-bob-old-key-123456"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Rotate("bob", "sk-bob-new-key-654321", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(&Entry{Name: "eve", SHA256: Hash("sk-eve-key-000000000")}); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(&Entry{Name: "eve", SHA256: Hash("x")}); err == nil {
		t.Fatal("duplicate name accepted")
	}
	if err := f.Add(&Entry{Name: "mallory", Clear: "sk-clear-clear-clear"}); err == nil {
		t.Fatal("clear-text key accepted by Add")
	}
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "sk-bob") {
		t.Fatalf("rotated file still holds the clear key:\n%s", data)
	}
	g, _, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	s := NewSet(g)
	for secret, want := range map[string]error{"sk-bob-new-key-654321": nil, "sk-bob-old-key-123456": nil} {
		if _, err := s.Lookup(secret, now); err != want {
			t.Fatalf("%s now: %v", Mask(secret), err)
		}
	}
	if _, err := s.Lookup("sk-bob-old-key-123456", now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("old key after the grace: %v", err)
	}
	if !g.Remove("eve") || g.Remove("eve") || g.Entry("eve") != nil {
		t.Fatal("Remove")
	}
}

// TestReadFileErrorsNameFileLineCol: every problem of a bad keys file reads
// "path:line:col: message", the form an operator's editor jumps to.
func TestReadFileErrorsNameFileLineCol(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api_keys.json")
	src := "{\"api_keys\": {\n  \"a\": 42,\n  \"b\": {\"sha256\": \"zz\"}\n}}"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := ReadFile(path)
	if err == nil {
		t.Fatal("a bad file loaded")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], path+":2:8: ") || !strings.HasPrefix(lines[1], path+":3:8: ") {
		t.Fatalf("got %q, want one path:line:col line per problem", err.Error())
	}
	if strings.Contains(err.Error(), "zz") {
		t.Fatalf("the error quotes a value from the file: %q", err.Error())
	}
}
