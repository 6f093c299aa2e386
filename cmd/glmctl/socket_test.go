package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBrokenConfigKeepsDaemonReachable: a typo in the file on disk must not
// lock the CLI out of the running daemon. The commands that need only the
// control socket warn (with file:line:col) and go on; reload reaches the
// daemon, which rejects the file (exit 1, its errors printed).
func TestBrokenConfigKeepsDaemonReachable(t *testing.T) {
	dir := t.TempDir()
	vp, up := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, "", vp, up)
	d := startDaemon(t, cfg)
	waitFor(t, "both RUNNING", 30*time.Second, func() bool { return glmctl(t, "status", "-c", cfg).code == 0 })

	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(good), "start_timeout =", "start_timout =", 1)
	if bad == string(good) {
		t.Fatal("the test config has no start_timeout to misspell")
	}
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, l := range strings.Split(bad, "\n") {
		if strings.Contains(l, "start_timout") {
			line = i + 1
		}
	}
	where := filepath.Base(cfg) + ":" // file:line:col of the typo
	for _, args := range [][]string{
		{"status"},
		{"stop", "ui"},
		{"start", "ui"},
		{"restart", "ui"},
		{"logs", "-n", "5", "vllm"},
	} {
		r := glmctl(t, append(args, "-c", cfg)...)
		if r.code != 0 {
			t.Errorf("%v with a broken config: exit %d, stderr %q; want 0", args, r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "warning: the config on disk has errors") || !strings.Contains(r.stderr, where) ||
			!strings.Contains(r.stderr, ":"+strconv.Itoa(line)+":") || !strings.Contains(r.stderr, "start_timout") {
			t.Errorf("%v: stderr %q lacks the warning with file:%d:col", args, r.stderr, line)
		}
	}
	r := glmctl(t, "reload", "-c", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "rejected") || !strings.Contains(r.stderr, "start_timout") {
		t.Errorf("reload of a broken config: exit %d, stderr %q; want 1, rejected, naming the problem", r.code, r.stderr)
	}
	if got := d.state(t, "vllm"); got != "RUNNING" {
		t.Errorf("after the rejected reload vllm is %s", got)
	}

	// A broken control block's file still yields its socket: the block alone
	// is read when the file as a whole does not parse.
	syntax := strings.Replace(string(good), "program \"ui\" {", "program \"ui\" {{ oops", 1)
	if err := os.WriteFile(cfg, []byte(syntax), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := glmctl(t, "status", "-c", cfg); r.code != 0 || !strings.Contains(r.stderr, "using control socket "+d.sock) {
		t.Errorf("status with a syntax error: exit %d, stderr %q", r.code, r.stderr)
	}

	// --socket and GLMCTL_SOCKET: the config is not read at all.
	missing := filepath.Join(dir, "none.hcl")
	if r := glmctl(t, "status", "-c", missing, "--socket", d.sock); r.code != 0 || r.stderr != "" {
		t.Errorf("status --socket: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Setenv("GLMCTL_SOCKET", d.sock)
	if r := glmctl(t, "status", "-c", missing); r.code != 0 || r.stderr != "" {
		t.Errorf("status with GLMCTL_SOCKET: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Setenv("GLMCTL_SOCKET", "")
	if r := glmctl(t, "status", "-c", missing); r.code != 2 || !strings.Contains(r.stderr, "--socket PATH") {
		t.Errorf("status with a missing config: exit %d, stderr %q; want 2 and the --socket hint", r.code, r.stderr)
	}
	if r := glmctl(t, "status", "--socket", filepath.Join(dir, "nosuch.sock")); r.code != 4 {
		t.Errorf("status --socket to nothing: exit %d, want 4", r.code)
	}
}

func TestLenientSocket(t *testing.T) {
	for name, tc := range map[string]struct {
		src  string
		want string
		ok   bool
	}{
		"valid":          {"control { socket = \"/a.sock\" }\n", "/a.sock", true},
		"unknown attr":   {"control {\n  socket = \"/b.sock\"\n  sokcet = 1\n}\nprogram \"x\" { comand = [] }\n", "/b.sock", true},
		"syntax before":  {"program \"x\" {{{\n\ncontrol {\n  # the CLI's socket {\n  socket = \"/c.sock\" // }\n}\n", "/c.sock", true},
		"no block":       {"program \"x\" {\n  command = [\"true\"]\n}\n", "", false},
		"not a constant": {"control { socket = env(\"X\") }\n", "", false},
		"empty":          {"control { socket = \"\" }\n", "", false},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := lenientSocket([]byte(tc.src), "f.hcl")
			if got != tc.want || ok != tc.ok {
				t.Errorf("lenientSocket = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
