package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/testutil"
	"github.com/glmctl/glmctl/pkg/launcher"
)

// preflightConfig names, on lines the test checks, everything Preflight
// looks at outside the file.
const preflightConfig = `control { socket = "@DIR@/glmctl.sock" }
metrics {
  listen            = "127.0.0.1:0"
  bearer_token_file = "@DIR@/missing.token"
}
program "a" {
  command   = ["@DIR@/not-here"]
  user      = "glmctl-no-such-user"
  directory = "@DIR@/no-dir"
}
program "b" {
  command = ["glmctl-no-such-command"]
  log { path = "@DIR@" }
  health { exec = ["@DIR@/no-probe"] }
}
program "maint" {
  command   = ["@DIR@/reindex"]
  autostart = false
}
guard {
  listen    = "127.0.0.1:0"
  upstream  = "http://127.0.0.1:1"
  keys_file = "@DIR@/keys.json"
  tls {
    cert = "@DIR@/cert.pem"
    key  = "@DIR@/key.pem"
  }
}
audit {
  path          = "@DIR@/file/sub/audit.log"
  hmac_key_file = "@DIR@/short.key"
}
`

// TestPreflight: every outside problem of a config comes back at its
// setting's line:col, and New refuses the config with the same problems
// before starting anything.
func TestPreflight(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys.json"), `{"api_keys": {}}`)
	writeFile(t, filepath.Join(dir, "short.key"), "too short\n")
	writeFile(t, filepath.Join(dir, "file"), "a file where the audit directory should be\n")
	src := strings.ReplaceAll(preflightConfig, "@DIR@", dir)
	cfg, err := config.Parse([]byte(src), "pre.hcl")
	if err != nil {
		t.Fatal(err)
	}
	// Only root can start a program as a user; as root, the user must exist.
	userProblem := `pre.hcl:8:15: program "a": user "glmctl-no-such-user" does not exist`
	if euid := os.Geteuid(); euid != 0 {
		userProblem = fmt.Sprintf(`pre.hcl:8:15: program "a" runs as user "glmctl-no-such-user", and only root can start a program as a user (glmctl runs as uid %d)`, euid)
	}
	want := []string{
		`pre.hcl:25:12: guard tls certificate: open ` + dir + `/cert.pem: no such file or directory`,
		`pre.hcl:4:23: metrics bearer_token_file: open ` + dir + `/missing.token: no such file or directory`,
		`pre.hcl:31:19: read audit hmac key ` + dir + `/short.key: 9 bytes, want at least 16`,
		`pre.hcl:30:19: audit path ` + dir + `/file/sub/audit.log: ` + dir + `/file is a file, not a directory`,
		userProblem,
		`pre.hcl:9:15: program "a": directory ` + dir + `/no-dir: no such file or directory`,
		`pre.hcl:7:15: program "a": command ` + dir + `/not-here does not exist`,
		`pre.hcl:12:13: program "b": command "glmctl-no-such-command" is not in PATH`,
		`pre.hcl:14:19: program "b": health check command ` + dir + `/no-probe does not exist`,
		`pre.hcl:13:16: program "b": log path ` + dir + ` is a directory`,
	}
	ps, warns := Preflight(cfg)
	// A program that never starts by itself only warns.
	if len(warns) != 1 || !strings.HasPrefix(warns[0].Error(), `pre.hcl:17:15: program "maint": command `+dir+`/reindex does not exist`) {
		t.Errorf("warnings: %v", warns)
	}
	if len(ps) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(ps), len(want), ps)
	}
	for i, w := range want {
		if i < len(ps) && !strings.HasPrefix(ps[i].Error(), w) {
			t.Errorf("problem %d:\n%s\nwant it to begin\n%s", i, ps[i].Error(), w)
		}
	}
	d, err := New(cfg, Options{})
	var got config.Problems
	if d != nil || !errors.As(err, &got) || len(got) != len(ps) {
		t.Fatalf("New: %v, %v; want the %d problems", d, err, len(ps))
	}
	if _, err := os.Stat(filepath.Join(dir, "file")); err != nil {
		t.Fatal(err)
	}
}

// TestReloadRefusesPreflight: a reload to a config whose program names a
// command that does not exist is refused with the problem at its line:col,
// and the running program is left alone.
func TestReloadRefusesPreflight(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	command := "/bin/sh"
	parse := func() (*config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return config.Parse([]byte(fmt.Sprintf(`control { socket = "%s/glmctl.sock" }
program "p" {
  command    = [%q, "-c", "exec sleep 60"]
  start_secs = "50ms"
}
`, dir, command)), "re.hcl")
	}
	first, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(first, Options{Reload: parse})
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, d)
	status := func() launcher.Status { return statusOf(t, d, "p") }
	waitFor(t, 20*time.Second, "p RUNNING", func() bool { return status().State == launcher.StateRunning })
	pid := status().PID
	mu.Lock()
	command = filepath.Join(dir, "gone")
	mu.Unlock()
	err = d.Reload(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), `re.hcl:3:16: program "p": command `+command+` does not exist`) {
		t.Fatalf("reload: %v", err)
	}
	if st := status(); st.State != launcher.StateRunning || st.PID != pid || d.config() != first {
		t.Fatalf("after a refused reload: %+v, config replaced: %v", st, d.config() != first)
	}
}

// TestReloadWarnsWhatItDoesNotApply: a file only a restart reads (here the
// metrics bearer token) that vanished does not stop a reload that leaves
// it alone; the reload says the next start would fail.
func TestReloadWarnsWhatItDoesNotApply(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "metrics.token")
	writeFile(t, token, "metrics-secret-0123456789\n")
	var mu sync.Mutex
	level := "info"
	parse := func() (*config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return config.Parse([]byte(fmt.Sprintf(`log { level = %q }
control { socket = "%s/glmctl.sock" }
metrics {
  listen            = "127.0.0.1:0"
  bearer_token_file = %q
}
`, level, dir, token)), "warn.hcl")
	}
	first, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	d, err := New(first, Options{Reload: parse, Logger: hclog.New(&hclog.LoggerOptions{Output: logs})})
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, d)
	if err := os.Remove(token); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	level = "debug"
	mu.Unlock()
	if err := d.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if d.config().Log.Level != "debug" {
		t.Fatalf("log level %q after the reload", d.config().Log.Level)
	}
	if l := logs.String(); !strings.Contains(l, "reloaded config: warn.hcl:5:23: metrics bearer_token_file: open "+token) {
		t.Errorf("no warning about the vanished token:\n%s", l)
	}
}
