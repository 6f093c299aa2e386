package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

// TestRepoHygiene: no build output is committed or left unignored, CI stops
// no process it did not start, and the README's first command is the
// Makefile's demo target, which execs glmctl so Ctrl-C reaches it directly.
func TestRepoHygiene(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("gitignore", func(t *testing.T) {
		lines := strings.Split(read(".gitignore"), "\n")
		for _, want := range []string{"/glmctl", "/bin/"} {
			found := false
			for _, l := range lines {
				found = found || strings.TrimSpace(l) == want
			}
			if !found {
				t.Errorf(".gitignore lacks %q", want)
			}
		}
	})

	t.Run("no committed binaries", func(t *testing.T) {
		if _, err := exec.LookPath("git"); err != nil {
			t.Skip("git not installed: cannot list tracked files")
		}
		out, err := exec.Command("git", "-C", repoRoot, "ls-files", "--cached", "-z").Output()
		if err != nil {
			t.Skipf("not a git checkout: %v", err)
		}
		for _, f := range strings.Split(string(out), "\x00") {
			if f == "" {
				continue
			}
			st, err := os.Stat(filepath.Join(repoRoot, f))
			if err != nil {
				continue // deleted in the work tree
			}
			if f == "glmctl" || st.Size() > 2<<20 {
				t.Errorf("%s (%d bytes) is tracked: build output belongs in bin/, ignored", f, st.Size())
			}
		}
	})

	t.Run("ci stops nothing it did not start", func(t *testing.T) {
		ci := read(".ci/run")
		for _, bad := range []string{"pkill", "killall", "kill "} {
			for _, l := range strings.Split(ci, "\n") {
				if code, _, _ := strings.Cut(l, "#"); strings.Contains(code, bad) {
					t.Errorf(".ci/run: %q: end only what you started, by PID", strings.TrimSpace(l))
				}
			}
		}
		if !strings.Contains(ci, "/usr/sbin/policy-rc.d") || !strings.Contains(ci, "exit 101") {
			t.Error(".ci/run does not keep packaged services from starting (policy-rc.d exit 101)")
		}
	})

	t.Run("make demo execs glmctl", func(t *testing.T) {
		m := regexp.MustCompile(`(?m)^demo:[^\n]*\n((?:\t[^\n]*\n)+)`).FindStringSubmatch(read("Makefile"))
		if m == nil {
			t.Fatal("Makefile has no demo target")
		}
		recipe := strings.Split(strings.TrimSpace(m[1]), "\n")
		if last := strings.TrimSpace(recipe[len(recipe)-1]); last != "exec $(BIN)/glmctl up --demo" {
			t.Errorf("demo recipe ends with %q, want exec $(BIN)/glmctl up --demo", last)
		}
		if !regexp.MustCompile(`(?m)^demo:.*\bbuild\b`).MatchString(read("Makefile")) {
			t.Error("demo does not depend on build")
		}
	})

	t.Run("readme exit codes", func(t *testing.T) {
		_, sec, ok := strings.Cut(read("README.md"), "## Exit codes\n")
		if !ok {
			t.Fatal(`README has no "Exit codes" section`)
		}
		sec, _, _ = strings.Cut(sec, "\n## ")
		for _, c := range newApp().Commands {
			if c.Hidden {
				continue
			}
			if !regexp.MustCompile("(?m)^\\| `[^`]*\\b" + regexp.QuoteMeta(c.Name) + "\\b").MatchString(sec) {
				t.Errorf("README's Exit codes table has no row for %q", c.Name)
			}
		}
		for _, want := range []string{"2 on a usage error", "did you mean", "--allow-skip", "--socket PATH"} {
			if !strings.Contains(sec, want) {
				t.Errorf("README's Exit codes section does not mention %q", want)
			}
		}
	})

	t.Run("readme first command", func(t *testing.T) {
		readme := read("README.md")
		_, sec, ok := strings.Cut(readme, "## Two commands\n")
		if !ok {
			t.Fatal(`README has no "Two commands" section`)
		}
		_, block, _ := strings.Cut(sec, "```sh\n")
		if first, _, _ := strings.Cut(block, "\n"); !strings.HasPrefix(first, "make demo") {
			t.Errorf("first command %q, want make demo", first)
		}
	})
}
