package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/selfcheck"
)

func TestCheckOffline(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "api_keys.json")
	lf := filepath.Join(dir, "rate_limits.json")
	for src, dst := range map[string]string{"api_keys.json": kf, "rate_limits.json": lf} {
		b, err := os.ReadFile(filepath.Join(tutorialDir, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "glmctl.hcl")
	// check looks the command up as a start would: a stand-in vllm.
	vllm := filepath.Join(dir, "vllm")
	if err := os.WriteFile(vllm, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(extra string) {
		t.Helper()
		src := fmt.Sprintf(`program "vllm" {
  command = [%q, "serve", "m", "--host", "0.0.0.0", "--port", "8001"]
}
guard {
  listen      = "0.0.0.0:8000"
  upstream    = "http://127.0.0.1:8001"
  keys_file   = %q
  limits_file = %q
}
audit {
  path = "/var/log/vllm/audit.log"
  %s
}
`, vllm, kf, lf, extra)
		if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The tutorial's files load; the setup's risks are warned about.
	write(`rotate { max_size = "1000TiB" }`)
	r := glmctl(t, "check", "-c", cfg, "--logrotate-dir", tutorialDir)
	if r.code != 0 {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"✅ " + cfg + ": valid",
		"⚠ " + kf + ":3:10: key \"user1\" is stored in clear text",
		"✅ " + lf + ": default and 2 per-key limit(s)",
		"⚠ guard listens on 0.0.0.0:8000 beyond loopback without TLS",
		"⚠ program \"vllm\" listens on --host 0.0.0.0",
		"less than 2 × rotate.max_size",
		"copytruncate",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "sk-") {
		t.Errorf("check printed a key:\n%s", r.stdout)
	}

	// Broken keys and limits files: every problem, with file:line:col, exit 1.
	write("")
	if err := os.WriteFile(kf, []byte("{\"api_keys\": {\n  \"a\": 12,\n  \"b\": {\"sha256\": \"xyz\"}\n}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lf, []byte("{\"rate_limits\": {\n  \"default\": {\"rpm\": -1},\n  \"u\": {\"rpm\": \"x\"} # comment\n}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = glmctl(t, "check", "-c", cfg, "--logrotate-dir", dir)
	if r.code != 1 {
		t.Fatalf("check with broken files: exit %d\n%s", r.code, r.stdout)
	}
	for _, want := range []string{"❌ " + kf + ":2:", "❌ " + kf + ":3:", "❌ " + lf + ":2:", "❌ " + lf + ":3:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "less than 2 ×") {
		t.Errorf("room warning with the default max_size:\n%s", r.stdout)
	}

	// What a start would fail on is a problem at its line:col, not "valid".
	if err := os.Remove(vllm); err != nil {
		t.Fatal(err)
	}
	r = glmctl(t, "check", "-c", cfg, "--logrotate-dir", dir)
	if want := "❌ " + cfg + ":2:13: program \"vllm\": command " + vllm + " does not exist"; r.code != 1 ||
		!strings.Contains(r.stdout, want) || strings.Contains(r.stdout, "✅ "+cfg) {
		t.Errorf("check without the command: exit %d, want 1 and %q:\n%s", r.code, want, r.stdout)
	}
}

// TestCheckPolicyTooLarge: a policy rule only the guard's automaton can
// refuse (too large) fails `glmctl check` and `glmctl up` alike, at the
// rule's FILE:LINE:COL — never "valid" for a config `up` refuses.
func TestCheckPolicyTooLarge(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "api_keys.json")
	if err := os.WriteFile(kf, []byte(`{"api_keys": {}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "glmctl.hcl")
	src := fmt.Sprintf(`control { socket = "%s/glmctl.sock" }
guard {
  listen    = "127.0.0.1:0"
  upstream  = "http://127.0.0.1:1"
  keys_file = %q
}
policy {
  rule "big" {
    pattern = "[\\p{L}\\p{N}]{1000}x{1,1000}"
    action  = "reject"
  }
}
`, dir, kf)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	want := cfg + `:9:15: policy rule "big": with this rule the policy's patterns need more than 524,288 automaton instructions`
	r := glmctl(t, "check", "-c", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "❌ "+want) || strings.Contains(r.stdout, "valid") {
		t.Errorf("check: exit %d, want 1 and %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	r = glmctl(t, "up", "-c", cfg)
	if r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Errorf("up: exit %d, want 2 (a bad config) and %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
}

const liveConfig = `
control { socket = "%[1]s/glmctl.sock" }
metrics { listen = "127.0.0.1:%[3]d" }
program "vllm" {
  command       = [glmctl_bin, "stub", "vllm", "--uds", "%[1]s/vllm.sock", "--load-time", "200ms"]
  start_timeout = "1m"
  stop_timeout  = "5s"
  health {
    http        = "http://localhost/health"
    unix_socket = "%[1]s/vllm.sock"
    interval    = "200ms"
    timeout     = "150ms"
  }
}
guard {
  listen      = "127.0.0.1:%[2]d"
  upstream    = "unix://%[1]s/vllm.sock"
  program     = "vllm"
  keys_file   = "%[1]s/keys/api_keys.json"
  limits_file = "%[1]s/keys/rate_limits.json"
}
audit {
  path  = "%[1]s/audit.log"
  fsync = "never"
}
`

func TestCheckLive(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	kf := filepath.Join(dir, "keys", "api_keys.json")
	lf := filepath.Join(dir, "keys", "rate_limits.json")
	tk, _ := os.ReadFile(filepath.Join(tutorialDir, "api_keys.json"))
	limits, _ := os.ReadFile(filepath.Join(tutorialDir, "rate_limits.json"))
	if err := os.WriteFile(kf, tk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lf, limits, 0o600); err != nil {
		t.Fatal(err)
	}
	r := glmctl(t, "keys", "new", "probe", "--file", kf)
	if r.code != 0 {
		t.Fatalf("keys new: %s", r.stderr)
	}
	key := strings.TrimSpace(r.stdout)
	keysBefore, _ := os.ReadFile(kf)

	cfg := filepath.Join(dir, "glmctl.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(liveConfig, dir, freePort(t), freePort(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, cfg)
	waitFor(t, "vllm RUNNING", 30*time.Second, func() bool { return glmctl(t, "status", "-c", cfg).code == 0 })

	start := time.Now()
	r = glmctl(t, "check", "--live", "-c", cfg, "--key", key)
	t.Logf("check --live took %v:\n%s", time.Since(start), r.stdout)
	if r.code != 0 {
		t.Fatalf("check --live: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 7 {
		t.Errorf("%d lines, want 7", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "✅ ") {
			t.Errorf("not passed: %s", l)
		}
	}
	// The temporary key and its limit are gone; the files are as they were.
	if got, _ := os.ReadFile(lf); string(got) != string(limits) {
		t.Errorf("limits file changed:\n%s", got)
	}
	if got, _ := os.ReadFile(kf); string(got) != string(keysBefore) {
		t.Errorf("keys file changed:\n%s", got)
	}

	// --json, key from GLMCTL_KEY; a wrong key fails the 200 check, exit 1.
	t.Setenv("GLMCTL_KEY", "sk-not-a-key-at-all-0123456789")
	r = glmctl(t, "check", "--live", "--json", "-c", cfg)
	var out struct {
		Passed bool               `json:"passed"`
		Checks []selfcheck.Result `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if r.code != 1 || out.Passed || len(out.Checks) != 7 {
		t.Fatalf("wrong key: exit %d %+v", r.code, out)
	}
	for _, c := range out.Checks {
		want := selfcheck.Pass
		if c.Name == selfcheck.CheckRightKey {
			want = selfcheck.Fail
		}
		if c.Status != want {
			t.Errorf("%s: %s (%s), want %s", c.Name, c.Status, c.Detail, want)
		}
	}
	if strings.Contains(r.stdout, "sk-not-a-key") {
		t.Error("the key was printed")
	}
}

// TestCheckLiveExposedUpstream: a TCP upstream listening on every interface
// fails the upstream check; checks without what they need are skipped.
func TestCheckLiveExposedUpstream(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "api_keys.json")
	r := glmctl(t, "keys", "new", "probe", "--file", kf)
	if r.code != 0 {
		t.Fatalf("keys new: %s", r.stderr)
	}
	key := strings.TrimSpace(r.stdout)
	vp, gp := freePort(t), freePort(t)
	src := fmt.Sprintf(`
control { socket = "%[1]s/glmctl.sock" }
program "vllm" {
  command = [glmctl_bin, "stub", "vllm", "--host", "0.0.0.0", "--port", "%[2]d"]
  health {
    tcp      = "127.0.0.1:%[2]d"
    interval = "200ms"
    timeout  = "150ms"
  }
}
guard {
  listen    = "127.0.0.1:%[3]d"
  upstream  = "http://127.0.0.1:%[2]d"
  keys_file = %[4]q
}
`, dir, vp, gp, kf)
	cfg := filepath.Join(dir, "glmctl.hcl")
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, cfg)
	waitFor(t, "vllm RUNNING", 30*time.Second, func() bool { return glmctl(t, "status", "-c", cfg).code == 0 })
	r = glmctl(t, "check", "--live", "-c", cfg, "--key", key)
	t.Logf("check --live:\n%s", r.stdout)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"✅ right key → 200",
		"⚠ skipped: burst → 429 with Retry-After: no guard.limits_file",
		"⚠ skipped: audit log recorded the probes and verifies: no audit block",
		"⚠ skipped: /metrics answers: no metrics block",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if len(hostAddrsForTest()) > 0 && !strings.Contains(r.stdout, "❌ upstream refuses direct connections from outside loopback: the model server answers on") {
		t.Errorf("exposed upstream not reported")
	}

	// Without a key and without a limits file the right-key check still
	// runs, on a temporary key that has no limits entry; it is removed.
	t.Setenv("GLMCTL_KEY", "")
	before, _ := os.ReadFile(kf)
	r = glmctl(t, "check", "--live", "-c", cfg)
	if !strings.Contains(r.stdout, "✅ right key → 200 with a completion (temporary key glmctl-check-") {
		t.Errorf("no key, no limits file:\n%s", r.stdout)
	}
	if after, _ := os.ReadFile(kf); string(after) != string(before) {
		t.Errorf("keys file changed:\n%s", after)
	}
}

// hostAddrsForTest lists this host's non-loopback IPv4 addresses.
func hostAddrsForTest() []string {
	addrs, _ := net.InterfaceAddrs()
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

// TestCheckLiveWithoutKey: without --key (and GLMCTL_KEY) the right-key
// check runs on the temporary rpm-1 key instead of being skipped; a skip
// that is not the config's choice fails the run unless --allow-skip.
func TestCheckLiveWithoutKey(t *testing.T) {
	t.Setenv("GLMCTL_KEY", "")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	kf := filepath.Join(dir, "keys", "api_keys.json")
	lf := filepath.Join(dir, "keys", "rate_limits.json")
	token := filepath.Join(dir, "metrics.token")
	keysSrc, _ := os.ReadFile(filepath.Join(tutorialDir, "api_keys.json"))
	limits, _ := os.ReadFile(filepath.Join(tutorialDir, "rate_limits.json"))
	for path, b := range map[string][]byte{kf: keysSrc, lf: limits, token: []byte("metrics-bearer-token\n")} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := fmt.Sprintf(liveConfig, dir, freePort(t), freePort(t))
	metricsLine := regexp.MustCompile(`metrics \{ listen = ("[^"]+") \}`)
	src = metricsLine.ReplaceAllString(src, "metrics {\n  listen = $1\n  bearer_token_file = \""+token+"\"\n}")
	cfg := filepath.Join(dir, "glmctl.hcl")
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, cfg)
	waitFor(t, "vllm RUNNING", 30*time.Second, func() bool { return glmctl(t, "status", "-c", cfg).code == 0 })

	r := glmctl(t, "check", "--live", "-c", cfg)
	t.Logf("check --live without a key:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0", r.code)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 7 {
		t.Errorf("%d lines, want 7", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "✅ ") {
			t.Errorf("not passed: %s", l)
		}
	}
	if !strings.Contains(r.stdout, "✅ right key → 200 with a completion (temporary key glmctl-check-") {
		t.Errorf("the right-key check did not run on the temporary key:\n%s", r.stdout)
	}
	if got, _ := os.ReadFile(kf); string(got) != string(keysSrc) {
		t.Errorf("keys file changed:\n%s", got)
	}
	if got, _ := os.ReadFile(lf); string(got) != string(limits) {
		t.Errorf("limits file changed:\n%s", got)
	}

	// A check that cannot run here (the metrics token is gone) is skipped,
	// and a skip is not a pass.
	if err := os.Remove(token); err != nil {
		t.Fatal(err)
	}
	r = glmctl(t, "check", "--live", "-c", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "⚠ skipped: /metrics answers: cannot read the metrics bearer token") ||
		!strings.Contains(r.stderr, "a skipped check is not a pass") || !strings.Contains(r.stderr, "--allow-skip") {
		t.Errorf("a skipped check: exit %d\n%s%s\nwant 1, the skip and the --allow-skip hint", r.code, r.stdout, r.stderr)
	}
	if r := glmctl(t, "check", "--live", "-c", cfg, "--allow-skip"); r.code != 0 {
		t.Errorf("--allow-skip: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = glmctl(t, "check", "--live", "--json", "-c", cfg)
	var out struct {
		Passed  bool `json:"passed"`
		Skipped int  `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 1 || out.Passed || out.Skipped != 1 {
		t.Errorf("--json with a skip: exit %d %+v %v\n%s", r.code, out, err, r.stdout)
	}
}
