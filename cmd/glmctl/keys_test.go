package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
)

var secretRE = regexp.MustCompile(`^sk-[A-Za-z0-9]{43}$`)

// tutorialKeys copies the tutorial's keys file (clear text, no indentation)
// into a temporary directory with mode 0600.
func tutorialKeys(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "testdata", "tutorial", "api_keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "api_keys.json")
	if err := os.WriteFile(path, src, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readKeys(t *testing.T, path string) *keys.File {
	t.Helper()
	f, _, err := keys.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestKeysLifecycle(t *testing.T) {
	path := tutorialKeys(t)

	// new: flags after the name; the key alone on the first line of stdout.
	r := glmctl(t, "keys", "new", "bob", "--role", "admin", "--models", "glm-4.7-flash,other", "--expires", "30d", "--file", path)
	if r.code != 0 {
		t.Fatalf("keys new: exit %d %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 1 || !secretRE.MatchString(lines[0]) {
		t.Fatalf("keys new stdout %q: want one line sk- + 43 base62", r.stdout)
	}
	bob := lines[0]
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), bob) || strings.Contains(r.stderr, bob) {
		t.Fatal("the new secret is in the file or on stderr")
	}
	f := readKeys(t, path)
	e := f.Entry("bob")
	if e == nil || e.SHA256 != keys.Hash(bob) || e.Role != "admin" || len(e.Models) != 2 || e.Created.IsZero() || e.Expires.IsZero() {
		t.Fatalf("bob entry %+v", e)
	}
	if f.Entry("user1").Clear != "sk-abc123def456ghi789jkl012mno345pqr" {
		t.Error("an untouched clear-text entry was changed")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if r := glmctl(t, "keys", "new", "bob", "--file", path); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("duplicate name: exit %d %q", r.code, r.stderr)
	}
	if r := glmctl(t, "keys", "new", "eve", "--role", "root", "--file", path); r.code != 2 {
		t.Errorf("bad role: exit %d, want 2", r.code)
	}

	// list: every key, clear text flagged, never a secret.
	r = glmctl(t, "keys", "list", "--file", path)
	if r.code != 0 || !strings.Contains(r.stdout, "clear text — run glmctl keys hash") || !strings.Contains(r.stdout, "bob") {
		t.Fatalf("keys list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "sk-") {
		t.Errorf("keys list shows a secret:\n%s", r.stdout)
	}
	r = glmctl(t, "keys", "list", "--json", "--file", path)
	var infos []keyInfo
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 4 {
		t.Fatalf("keys list --json: %v %q", err, r.stdout)
	}
	if !infos[0].ClearText || infos[3].Name != "bob" || infos[3].Role != "admin" || strings.Contains(r.stdout, "sk-") {
		t.Errorf("keys list --json: %+v", infos)
	}

	// rotate: new secret printed; the old one kept in previous until the grace ends.
	r = glmctl(t, "keys", "rotate", "bob", "--grace", "2h", "--file", path)
	if r.code != 0 || !secretRE.MatchString(strings.TrimSpace(r.stdout)) {
		t.Fatalf("keys rotate: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	bob2 := strings.TrimSpace(r.stdout)
	e = readKeys(t, path).Entry("bob")
	if e.SHA256 != keys.Hash(bob2) || len(e.Previous) != 1 || e.Previous[0].SHA256 != keys.Hash(bob) {
		t.Fatalf("after rotate: %+v", e)
	}
	set := keys.NewSet(readKeys(t, path))
	for _, s := range []string{bob, bob2} {
		if _, err := set.Lookup(s, e.Created); err != nil {
			t.Errorf("lookup after rotate: %v", err)
		}
	}
	if _, err := set.Lookup(bob, e.Previous[0].Until); err == nil {
		t.Error("the old key still works after the grace period")
	}

	// revoke: disabled, kept in the file; a clear-text one loses its secret.
	if r := glmctl(t, "keys", "revoke", "user2", "--file", path); r.code != 0 {
		t.Fatalf("revoke: exit %d %s", r.code, r.stderr)
	}
	f = readKeys(t, path)
	if e := f.Entry("user2"); e == nil || !e.Disabled || e.Clear != "" {
		t.Errorf("after revoke: %+v", e)
	}
	if _, err := keys.NewSet(f).Lookup("sk-678stu901vwx234yza567bcd890efg123", e.Created); err == nil {
		t.Error("a revoked key still works")
	}
	if r := glmctl(t, "keys", "revoke", "nosuch", "--file", path); r.code != 1 || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("revoke nosuch: exit %d %q", r.code, r.stderr)
	}

	// hash: every clear-text key hashed in place, still valid.
	if r := glmctl(t, "keys", "hash", "--file", path); r.code != 0 || !strings.Contains(r.stderr, "user1") {
		t.Fatalf("hash: exit %d %s", r.code, r.stderr)
	}
	raw, _ = os.ReadFile(path)
	if strings.Contains(string(raw), "sk-") {
		t.Errorf("clear text left after keys hash:\n%s", raw)
	}
	if k, err := keys.NewSet(readKeys(t, path)).Lookup("sk-abc123def456ghi789jkl012mno345pqr", e.Created); err != nil || k.Name != "user1" {
		t.Errorf("user1 after hash: %v %v", k, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode after rewrites %v, want 0600", st.Mode().Perm())
	}
}

// TestKeysFileFromConfig: without --file the config's guard.keys_file is
// used, -c after the command.
func TestKeysFileFromConfig(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "keys.json")
	cfg := filepath.Join(dir, "glmctl.hcl")
	src := fmt.Sprintf("guard {\n  upstream = \"http://127.0.0.1:1\"\n  keys_file = %q\n}\n", kf)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := glmctl(t, "keys", "new", "ann", "-c", cfg); r.code != 0 {
		t.Fatalf("keys new -c: exit %d %s", r.code, r.stderr)
	}
	if st, err := os.Stat(kf); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new keys file: %v", err)
	}
	if readKeys(t, kf).Entry("ann") == nil {
		t.Error("ann missing")
	}
	if err := os.WriteFile(cfg, []byte("log { level = \"info\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := glmctl(t, "keys", "list", "-c", cfg); r.code != 2 || !strings.Contains(r.stderr, "keys_file") {
		t.Errorf("no keys_file: exit %d %q", r.code, r.stderr)
	}
}

// TestKeysConcurrentWriters runs many `keys new` processes at once on one
// file: the lock makes every one of them land.
func TestKeysConcurrentWriters(t *testing.T) {
	path := tutorialKeys(t)
	const n = 24
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = glmctl(t, "keys", "new", fmt.Sprintf("k%02d", i), "--file", path)
		}()
	}
	wg.Wait()
	f := readKeys(t, path)
	for i, r := range results {
		name := fmt.Sprintf("k%02d", i)
		if r.code != 0 {
			t.Errorf("%s: exit %d %s", name, r.code, r.stderr)
			continue
		}
		if e := f.Entry(name); e == nil || e.SHA256 != keys.Hash(strings.TrimSpace(r.stdout)) {
			t.Errorf("%s lost: %+v", name, e)
		}
	}
	if len(f.Entries) != n+3 {
		t.Errorf("%d entries, want %d", len(f.Entries), n+3)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".api_keys.json.tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestKeysNeverWritesABrokenFile: a keys file that does not parse is left
// alone and the problem is reported with its position.
func TestKeysNeverWritesABrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api_keys.json")
	bad := "{\"api_keys\": {\"a\": 12}}\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	r := glmctl(t, "keys", "new", "bob", "--file", path)
	if r.code == 0 || !strings.Contains(r.stderr, "1:") {
		t.Errorf("keys new on a broken file: exit %d %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(path); string(got) != bad {
		t.Errorf("broken file rewritten: %q", got)
	}
}

// TestKeysReissueRevokedName: a revoked name is reissued with
// keys new NAME --replace, in place, keeping its role, its limits and the
// file's comments; without --replace the name is refused with that hint.
func TestKeysReissueRevokedName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api_keys.json")
	src := "# team keys\n{\"api_keys\": {\n  \"bob\": \"sk-bob-tutorial-key-0001\", # bob's laptop\n  // the rest\n  \"eve\": \"sk-eve-tutorial-key-0001\"\n}}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	limits, err := os.ReadFile(filepath.Join(tutorialDir, "rate_limits.json"))
	if err != nil {
		t.Fatal(err)
	}
	lf := filepath.Join(dir, "rate_limits.json")
	if err := os.WriteFile(lf, limits, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := glmctl(t, "keys", "revoke", "eve", "--file", path); r.code != 0 {
		t.Fatalf("revoke: exit %d %s", r.code, r.stderr)
	}
	r := glmctl(t, "keys", "new", "eve", "--file", path)
	if r.code != 1 || !strings.Contains(r.stderr, "keys new eve --replace") || r.stdout != "" {
		t.Fatalf("new of a revoked name: exit %d, stderr %q; want 1 with the --replace hint", r.code, r.stderr)
	}
	if r := glmctl(t, "keys", "new", "bob", "--file", path); r.code != 1 || !strings.Contains(r.stderr, "keys rotate bob") {
		t.Errorf("new of an existing name: exit %d %q", r.code, r.stderr)
	}
	if r := glmctl(t, "keys", "new", "--help"); !strings.Contains(r.stdout, "--replace") || !strings.Contains(r.stdout, "limits") {
		t.Errorf("keys new --help does not document --replace:\n%s", r.stdout)
	}
	r = glmctl(t, "keys", "new", "eve", "--replace", "--file", path)
	if r.code != 0 || !secretRE.MatchString(strings.TrimSpace(r.stdout)) || !strings.Contains(r.stderr, "reissued") {
		t.Fatalf("new --replace: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	secret := strings.TrimSpace(r.stdout)
	f := readKeys(t, path)
	s := keys.NewSet(f)
	if k, err := s.Lookup(secret, time.Now()); err != nil || k.Name != "eve" {
		t.Errorf("the reissued key: %v %v", k, err)
	}
	if _, err := s.Lookup("sk-eve-tutorial-key-0001", time.Now()); err == nil {
		t.Error("eve's revoked secret works again")
	}
	if len(f.Entries) != 2 || f.Entries[1].Name != "eve" || f.Entries[1].Disabled {
		t.Errorf("entries after reissue: %+v", f.Entries)
	}
	raw, _ := os.ReadFile(path)
	for _, c := range []string{"# team keys", "# bob's laptop", "// the rest", `"bob": "sk-bob-tutorial-key-0001"`} {
		if !strings.Contains(string(raw), c) {
			t.Errorf("keys file lost %q:\n%s", c, raw)
		}
	}
	if got, _ := os.ReadFile(lf); string(got) != string(limits) {
		t.Error("the limits file changed")
	}
}

// TestKeysRotateGraceZero: rotate --grace 0 ends every earlier secret, also
// one still in the grace of an earlier rotation.
func TestKeysRotateGraceZero(t *testing.T) {
	path := tutorialKeys(t)
	first := "sk-abc123def456ghi789jkl012mno345pqr" // user1 in the tutorial's file
	r := glmctl(t, "keys", "rotate", "user1", "--grace", "1h", "--file", path)
	if r.code != 0 {
		t.Fatalf("rotate: exit %d %s", r.code, r.stderr)
	}
	second := strings.TrimSpace(r.stdout)
	r = glmctl(t, "keys", "rotate", "user1", "--grace", "0", "--file", path)
	if r.code != 0 {
		t.Fatalf("rotate --grace 0: exit %d %s", r.code, r.stderr)
	}
	third := strings.TrimSpace(r.stdout)
	s := keys.NewSet(readKeys(t, path))
	now := time.Now()
	for _, old := range []string{first, second} {
		if k, err := s.Lookup(old, now); err == nil {
			t.Errorf("%s still opens %q after rotate --grace 0", keys.Mask(old), k.Name)
		}
	}
	if k, err := s.Lookup(third, now); err != nil || k.Name != "user1" {
		t.Errorf("the new key: %v %v", k, err)
	}
}

// TestKeysPolicy: `keys policy` shows, sets part by part, refuses what the
// keys file itself would refuse (leaving the file as it was) and clears a
// key's own request policy; `keys list --json` shows it.
func TestKeysPolicy(t *testing.T) {
	path := tutorialKeys(t)
	policy := func() *keys.PolicyOverride { t.Helper(); return readKeys(t, path).Entry("user1").Policy }
	run := func(code int, args ...string) result {
		t.Helper()
		r := glmctl(t, append([]string{"keys", "policy", "user1", "--file", path}, args...)...)
		if r.code != code {
			t.Fatalf("keys policy %v: exit %d, want %d\n%s%s", args, r.code, code, r.stdout, r.stderr)
		}
		return r
	}
	if r := run(0); !strings.Contains(r.stdout, "no policy of its own") {
		t.Errorf("show: %q", r.stdout)
	}
	run(0, "--max-tokens", "500", "--deny-params", "tools, logprobs")
	if p := policy(); p == nil || p.MaxTokens != 500 || strings.Join(p.DenyParams, ",") != "tools,logprobs" {
		t.Fatalf("after set: %+v", p)
	}
	// The tutorial's clear-text key is stored hashed now, with the same secret.
	if e := readKeys(t, path).Entry("user1"); e.Clear != "" || e.SHA256 != keys.Hash("sk-abc123def456ghi789jkl012mno345pqr") {
		t.Fatalf("user1 after its policy was set: clear %q sha256 %s", e.Clear, e.SHA256)
	}
	run(0, "--max-prompt-tokens", "8000") // the other parts kept
	if p := policy(); p == nil || p.MaxPromptTokens != 8000 || p.MaxTokens != 500 || len(p.DenyParams) != 2 {
		t.Fatalf("after a second set: %+v", p)
	}
	before, _ := os.ReadFile(path)
	if r := run(2, "--deny-params", "model"); !strings.Contains(r.stderr, `cannot refuse "model"`) {
		t.Errorf("denying model: %q", r.stderr)
	}
	run(2, "--max-tokens", "-1")
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("a refused change wrote the file")
	}
	r := glmctl(t, "keys", "list", "--json", "--file", path)
	var infos []struct {
		Name   string               `json:"name"`
		Policy *keys.PolicyOverride `json:"policy"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil {
		t.Fatal(err)
	}
	for _, ki := range infos {
		if (ki.Name == "user1") != (ki.Policy != nil) {
			t.Errorf("list: %s policy %+v", ki.Name, ki.Policy)
		}
	}
	run(0, "--max-tokens", "0", "--max-prompt-tokens", "0", "--deny-params", "") // every part removed: no policy
	if p := policy(); p != nil {
		t.Fatalf("every part removed: %+v", p)
	}
	run(0, "--max-tokens", "7")
	run(2, "--clear", "--max-tokens", "1")
	run(0, "--clear")
	if p := policy(); p != nil {
		t.Fatalf("after --clear: %+v", p)
	}
	if r := glmctl(t, "keys", "policy", "nobody", "--max-tokens", "1", "--file", path); r.code != 1 {
		t.Errorf("unknown key: exit %d", r.code)
	}
}
