package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/jsonc"
)

// commented is the tutorial's api_keys.json as an operator annotates it, in
// the style of the tutorial's rate_limits.json (`#` comments after values)
// plus `//` comment lines.
func commented(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../testdata/tutorial/api_keys.json")
	if err != nil {
		t.Fatal(err) // the tutorial's files are part of the repo
	}
	src := string(b)
	for old, repl := range map[string]string{
		"{\n\"api_keys\": {\n": "# API keys of the GLM box — one per user\n{\n\"api_keys\": { // name: key\n// the first two are the team\n",
		"pqr\",\n":             "pqr\", # 用户1，每分钟120个请求\n",
		"efg123\",\n":          "efg123\", # 用户2\n// admins below\n",
		"uv901\"\n":            "uv901\" # 管理员\n",
		"}\n}":                 "  // end of keys\n}\n} # end",
	} {
		if !strings.Contains(src, old) {
			t.Fatalf("the tutorial's api_keys.json changed: no %q", old)
		}
		src = strings.Replace(src, old, repl, 1)
	}
	if _, _, err := Parse([]byte(src)); err != nil {
		t.Fatalf("commented tutorial file: %v\n%s", err, src)
	}
	return src
}

// commentsOf returns the comment of every line of src that has one.
func commentsOf(src string) []string {
	var out []string
	clean := strings.Split(string(jsonc.Strip([]byte(src))), "\n")
	for n, l := range strings.Split(src, "\n") {
		for i := range len(l) {
			if l[i] != clean[n][i] {
				out = append(out, strings.TrimSpace(l[i:]))
				break
			}
		}
	}
	return out
}

// TestUpdateKeepsComments: every `keys` write keeps the comments outside the
// entries it changes, on the tutorial's file.
func TestUpdateKeepsComments(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	src := commented(t)
	all := commentsOf(src)
	if len(all) != 9 {
		t.Fatalf("fixture has %d comments: %q", len(all), all)
	}
	for _, tc := range []struct {
		name string
		fn   func(f *File) error
		gone []string // comments of the entries changed or removed
		want func(t *testing.T, f *File)
	}{
		{name: "no change", fn: func(*File) error { return nil }},
		{name: "new", fn: func(f *File) error {
			return f.Add(&Entry{Name: "carol", SHA256: Hash("sk-carol-key-0000001"), Role: RoleUser, Created: now})
		}, want: func(t *testing.T, f *File) {
			if f.Entries[3].Name != "carol" {
				t.Errorf("carol not appended: %v", f.Entries[3].Name)
			}
		}},
		{name: "rotate first", fn: func(f *File) error {
			return f.Rotate("user1", "sk-user1-new-key-0001", now.Add(time.Hour), now)
		}, want: func(t *testing.T, f *File) {
			if f.Entry("user1").Clear != "" || len(f.Entry("user1").Previous) != 1 {
				t.Errorf("user1 %+v", f.Entry("user1"))
			}
		}},
		{name: "revoke middle", fn: func(f *File) error { _, err := f.Revoke("user2"); return err },
			want: func(t *testing.T, f *File) {
				if !f.Entry("user2").Disabled || f.Entry("user1").Clear == "" {
					t.Errorf("user2 %+v, user1 %+v", f.Entry("user2"), f.Entry("user1"))
				}
			}},
		{name: "remove last", fn: func(f *File) error { f.Remove("admin"); return nil }, gone: []string{"# 管理员"}},
		{name: "remove first", fn: func(f *File) error { f.Remove("user1"); return nil }, gone: []string{"# 用户1，每分钟120个请求"}},
		{name: "remove middle", fn: func(f *File) error { f.Remove("user2"); return nil }, gone: []string{"# 用户2"}},
		{name: "remove all, then add", fn: func(f *File) error {
			f.Remove("user1")
			f.Remove("user2")
			f.Remove("admin")
			return f.Add(&Entry{Name: "solo", SHA256: Hash("sk-solo-key-00000001")})
		}, gone: []string{"# 用户1，每分钟120个请求", "# 用户2", "# 管理员"}},
		{name: "hash all", fn: func(f *File) error { f.HashClear(); return nil }},
		{name: "replace", fn: func(f *File) error {
			_, err := f.Replace(&Entry{Name: "user2", SHA256: Hash("sk-user2-new-key-0001"), Created: now})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "api_keys.json")
			if err := os.WriteFile(path, []byte(src), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := Update(path, false, tc.fn); err != nil {
				t.Fatal(err)
			}
			out, _ := os.ReadFile(path)
			if tc.name == "no change" && string(out) != src {
				t.Errorf("an unchanged file was rewritten:\n%s", out)
			}
			f, _, err := Parse(out)
			if err != nil {
				t.Fatalf("result does not parse: %v\n%s", err, out)
			}
			want, _, _ := Parse([]byte(src))
			if err := tc.fn(want); err != nil {
				t.Fatal(err)
			}
			if !sameEntries(f, want) {
				t.Errorf("entries differ from the change asked for:\n%s", out)
			}
			got := strings.Join(commentsOf(string(out)), "\n")
			for _, c := range all {
				if strings.Contains(strings.Join(tc.gone, "\n"), c) {
					if strings.Contains(got, c) {
						t.Errorf("comment %q of a removed entry kept", c)
					}
					continue
				}
				if !strings.Contains(got, c) {
					t.Errorf("comment %q lost:\n%s", c, out)
				}
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
			}
			if tc.want != nil {
				tc.want(t, f)
			}
			if t.Failed() {
				t.Logf("result:\n%s", out)
			}
		})
	}
}

// TestEditLayouts: the text edit on files of other shapes; the result always
// reads back as the change asked for, comments kept.
func TestEditLayouts(t *testing.T) {
	h := Hash("sk-new-key-000000001")
	add := func(f *File) error { return f.Add(&Entry{Name: "new", SHA256: h}) }
	rm := func(name string) func(*File) error {
		return func(f *File) error { f.Remove(name); return nil }
	}
	for _, tc := range []struct {
		name, src, want string
		fn              func(*File) error
	}{
		{"empty object", `{"api_keys": {}}`, "{\"api_keys\": {\n    \"new\": {\"sha256\":\"" + h + "\",\"role\":\"user\"}\n}}", add},
		{"empty lines", "{\"api_keys\": {\n  # none yet\n}}\n", "{\"api_keys\": {\n  # none yet\n    \"new\": {\"sha256\":\"" + h + "\",\"role\":\"user\"}\n}}\n", add},
		{"one line", `{"api_keys": {"a": "sk-aaaaaaaaaaaa"}} # c`, "{\"api_keys\": {\"a\": \"sk-aaaaaaaaaaaa\",\n    \"new\": {\"sha256\":\"" + h + "\",\"role\":\"user\"}}} # c", add},
		{"one line, remove first", `{"api_keys": {"a": "sk-aaaaaaaaaaaa", "b": "sk-bbbbbbbbbbbb"}}`, `{"api_keys": { "b": "sk-bbbbbbbbbbbb"}}`, rm("a")},
		{"one line, remove last", `{"api_keys": {"a": "sk-aaaaaaaaaaaa", "b": "sk-bbbbbbbbbbbb"}}`, `{"api_keys": {"a": "sk-aaaaaaaaaaaa"}}`, rm("b")},
		{"crlf", "{\"api_keys\": {\r\n  \"a\": \"sk-aaaaaaaaaaaa\", // a\r\n  \"b\": \"sk-bbbbbbbbbbbb\" // b\r\n}}\r\n", "{\"api_keys\": {\r\n  \"a\": \"sk-aaaaaaaaaaaa\" // a\r\n}}\r\n", rm("b")},
		{"comment with braces", "{\"api_keys\": {\n  \"a\": \"sk-aaaaaaaaaaaa\", # {\"x\": 1},\n  \"b\": \"sk-bbbbbbbbbbbb\" # }\n}, # \"api_keys\"\n\"other\": 1}\n", "{\"api_keys\": {\n  \"a\": \"sk-aaaaaaaaaaaa\", # {\"x\": 1},\n  \"new\": {\"sha256\":\"" + h + "\",\"role\":\"user\"}\n}, # \"api_keys\"\n\"other\": 1}\n", rm("b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _, err := Parse([]byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			orig, _, _ := Parse([]byte(tc.src))
			if err := tc.fn(f); err != nil {
				t.Fatal(err)
			}
			if tc.name == "comment with braces" {
				if err := add(f); err != nil {
					t.Fatal(err)
				}
			}
			out, err := edit([]byte(tc.src), orig, f)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("got\n%q\nwant\n%q", out, tc.want)
			}
		})
	}
}
