package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/control"
)

// glmctlBin is the glmctl binary built once for the end-to-end tests.
var glmctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "glmctl-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	glmctlBin = filepath.Join(dir, "glmctl")
	out, err := exec.Command("go", "build", "-o", glmctlBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build glmctl: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one CLI invocation's outcome.
type result struct {
	code           int
	stdout, stderr string
}

func glmctl(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, glmctlBin, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("glmctl %v: %v", args, err)
	}
	return r
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// daemon is a running `glmctl up` under test.
type testDaemon struct {
	cmd    *exec.Cmd
	cfg    string
	sock   string
	stderr *bytes.Buffer
	done   chan error
}

const e2eConfig = `
log { level = "debug" }
control { socket = "%[1]s/glmctl.sock" }
program "vllm" {
  command       = [glmctl_bin, "stub", "vllm", "--listen", "127.0.0.1:%[2]d", "--load-time", "500ms"]
  start_timeout = "1m"
  stop_timeout  = "5s"
  backoff {
    initial = "100ms"
    max     = "1s"
  }
  health {
    http     = "http://127.0.0.1:%[2]d/health"
    interval = "200ms"
    timeout  = "1s"
  }
  log { path = "%[1]s/vllm.log" }
}
program "ui" {
  command    = [glmctl_bin, "stub", "webui", "--listen", "127.0.0.1:%[3]d", "--api-base", "http://127.0.0.1:%[2]d/v1"]
  depends_on = ["vllm"]
  start_secs = "200ms"
  health {
    tcp      = "127.0.0.1:%[3]d"
    interval = "200ms"
    timeout  = "100ms"
  }
}
%[4]s
`

func writeConfig(t *testing.T, dir string, extra string, vllmPort, uiPort int) string {
	t.Helper()
	path := filepath.Join(dir, "glmctl.hcl")
	src := fmt.Sprintf(e2eConfig, dir, vllmPort, uiPort, extra)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startDaemon(t *testing.T, cfg string) *testDaemon {
	t.Helper()
	d := &testDaemon{cfg: cfg, sock: filepath.Join(filepath.Dir(cfg), "glmctl.sock"), stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(glmctlBin, "up", "-c", cfg)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
		if t.Failed() {
			t.Logf("glmctl up stderr:\n%s", d.stderr.String())
		}
	})
	waitFor(t, "control socket", 20*time.Second, func() bool {
		if d.cmd.ProcessState != nil {
			t.Fatalf("glmctl up exited early: %s", d.stderr.String())
		}
		_, err := os.Stat(d.sock)
		return err == nil
	})
	return d
}

func (d *testDaemon) status(t *testing.T) *control.StatusReply {
	t.Helper()
	r := glmctl(t, "status", "--json", "-c", d.cfg)
	if r.code != 0 && r.code != 3 {
		t.Fatalf("status exit %d: %s", r.code, r.stderr)
	}
	var st control.StatusReply
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return &st
}

func (d *testDaemon) state(t *testing.T, name string) string {
	for _, p := range d.status(t).Programs {
		if p.Name == name {
			return p.State
		}
	}
	t.Fatalf("no program %q in status", name)
	return ""
}

func TestCLIAgainstRealDaemon(t *testing.T) {
	dir := t.TempDir()
	vp, up := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, "", vp, up)
	d := startDaemon(t, cfg)

	// status works during the model load; ui waits for vllm's health.
	if r := glmctl(t, "status", "-c", cfg); r.code != 3 && r.code != 0 {
		t.Fatalf("status during load: exit %d %s", r.code, r.stderr)
	}
	waitFor(t, "both RUNNING", 30*time.Second, func() bool {
		return glmctl(t, "status", "-c", cfg).code == 0
	})
	st := d.status(t)
	for _, p := range st.Programs {
		if p.State != "RUNNING" || p.PID <= 0 || p.Health != "healthy" {
			t.Errorf("program %+v, want RUNNING, healthy, with a pid", p)
		}
	}
	r := glmctl(t, "status", "-c", cfg)
	for _, col := range []string{"NAME", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH", "LAST EXIT", "vllm", "RUNNING"} {
		if !strings.Contains(r.stdout, col) {
			t.Errorf("status table lacks %q:\n%s", col, r.stdout)
		}
	}

	// Flags after positional arguments, -c after the command.
	if r := glmctl(t, "status", "vllm", "--json", "-c", cfg); r.code != 0 || !strings.Contains(r.stdout, `"name": "vllm"`) {
		t.Errorf("status vllm --json: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := glmctl(t, "-c", cfg, "status", "vllm"); r.code != 0 {
		t.Errorf("-c before the command: exit %d %s", r.code, r.stderr)
	}
	if r := glmctl(t, "status", "nosuch", "-c", cfg); r.code != 1 || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("status nosuch: exit %d, stderr %q; want 1 naming it", r.code, r.stderr)
	}

	// stop / start / restart wait for the state.
	if r := glmctl(t, "stop", "ui", "-c", cfg); r.code != 0 {
		t.Fatalf("stop ui: exit %d %s", r.code, r.stderr)
	}
	if got := d.state(t, "ui"); got != "STOPPED" {
		t.Errorf("after stop: ui %s, want STOPPED", got)
	}
	if r := glmctl(t, "status", "-c", cfg); r.code != 3 {
		t.Errorf("status with ui stopped: exit %d, want 3", r.code)
	}
	if r := glmctl(t, "start", "ui", "-c", cfg); r.code != 0 {
		t.Fatalf("start ui: exit %d %s", r.code, r.stderr)
	}
	if got := d.state(t, "ui"); got != "RUNNING" {
		t.Errorf("after start: ui %s, want RUNNING", got)
	}
	oldPID := 0
	for _, p := range d.status(t).Programs {
		if p.Name == "vllm" {
			oldPID = p.PID
		}
	}
	if r := glmctl(t, "restart", "vllm", "-c", cfg); r.code != 0 {
		t.Fatalf("restart vllm: exit %d %s", r.code, r.stderr)
	}
	for _, p := range d.status(t).Programs {
		if p.Name == "vllm" && (p.State != "RUNNING" || p.PID == oldPID) {
			t.Errorf("after restart: %+v (old pid %d)", p, oldPID)
		}
	}

	// logs: the stand-in's output was captured, to the tail and the file.
	if r := glmctl(t, "logs", "vllm", "-n", "50", "-c", cfg); r.code != 0 || strings.TrimSpace(r.stdout) == "" {
		t.Errorf("logs vllm: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "vllm.log")); err != nil || len(b) == 0 {
		t.Errorf("vllm.log: %v (%d bytes)", err, len(b))
	}

	// reload: an invalid config is rejected and the old one kept…
	good, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, append(append([]byte{}, good...), []byte("\nbogus = 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := glmctl(t, "reload", "-c", filepath.Join(dir, "good.hcl")); r.code != 2 {
		t.Errorf("reload with a missing config file: exit %d, want 2", r.code)
	}
	_ = os.WriteFile(filepath.Join(dir, "good.hcl"), good, 0o600)
	if r := glmctl(t, "reload", "-c", filepath.Join(dir, "good.hcl")); r.code != 1 || !strings.Contains(r.stderr, "bogus") {
		t.Errorf("reload of an invalid config: exit %d, stderr %q; want 1 naming the problem", r.code, r.stderr)
	}
	// …and a valid one adds a program without touching the others.
	if err := os.WriteFile(cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	var uiPID int
	for _, p := range d.status(t).Programs {
		if p.Name == "ui" {
			uiPID = p.PID
		}
	}
	extra := `program "extra" {
  command    = ["sh", "-c", "echo extra up; exec sleep 600"]
  start_secs = "100ms"
}`
	writeConfig(t, dir, extra, vp, up)
	if r := glmctl(t, "reload", "-c", cfg); r.code != 0 {
		t.Fatalf("reload: exit %d %s", r.code, r.stderr)
	}
	waitFor(t, "extra RUNNING", 10*time.Second, func() bool { return d.state(t, "extra") == "RUNNING" })
	for _, p := range d.status(t).Programs {
		if p.Name == "ui" && p.PID != uiPID {
			t.Errorf("reload restarted the unchanged ui (pid %d -> %d)", uiPID, p.PID)
		}
	}

	// SIGTERM: graceful stop of everything, exit 0, socket removed, no child left.
	var pids []int
	for _, p := range d.status(t).Programs {
		pids = append(pids, p.PID)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("glmctl up after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("glmctl up did not stop within 30s of SIGTERM")
	}
	if _, err := os.Stat(d.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket still there after stop: %v", err)
	}
	for _, pid := range pids {
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			t.Errorf("pid %d still alive after glmctl stopped", pid)
		}
	}
	if r := glmctl(t, "status", "-c", cfg); r.code != 4 {
		t.Errorf("status with no daemon: exit %d, want 4", r.code)
	}
}

func TestBadConfigExitCodes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(cfg, []byte("program \"x\" {\n  comand = [\"true\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := glmctl(t, "up", "-c", cfg)
	if r.code != 2 || !strings.Contains(r.stderr, "bad.hcl:2:3") {
		t.Errorf("up with a bad config: exit %d, stderr %q; want 2 with file:line:col", r.code, r.stderr)
	}
	r = glmctl(t, "check", "-c", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "❌ ") || !strings.Contains(r.stdout, "bad.hcl:2:3") {
		t.Errorf("check of a bad config: exit %d, stdout %q; want 1 with file:line:col", r.code, r.stdout)
	}
	if r := glmctl(t, "status", "-c", filepath.Join(dir, "none.hcl")); r.code != 2 {
		t.Errorf("status with a missing config: exit %d, want 2", r.code)
	}
	if r := glmctl(t, "version"); r.code != 0 || !strings.Contains(r.stdout, "glmctl") {
		t.Errorf("version: exit %d %q", r.code, r.stdout)
	}
}

// descendants lists every live (non-zombie) descendant of pid from /proc.
func descendants(t *testing.T, pid int) []int {
	t.Helper()
	children := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var p int
		if _, err := fmt.Sscanf(e.Name(), "%d", &p); err != nil {
			continue
		}
		ppid, state, ok := procStat(p)
		if ok && state != "Z" {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// procStat reads a process's parent and state; zombies and vanished
// processes count as gone.
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", false
	}
	var st string
	if _, err := fmt.Sscanf(s[i+2:], "%s %d", &st, &ppid); err != nil {
		return 0, "", false
	}
	return ppid, st, true
}

func alive(pid int) bool {
	_, st, ok := procStat(pid)
	return ok && st != "Z"
}

// TestKill9LeavesNoProcess: SIGKILL to `glmctl up` while a vLLM-like tree
// (API server → EngineCore → two TP workers) runs leaves no process behind.
func TestKill9LeavesNoProcess(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "glmctl.hcl")
	src := fmt.Sprintf(`control {
  socket = "%[1]s/glmctl.sock"
}
program "vllm" {
  command = [glmctl_bin, "stub", "vllm", "--listen", "127.0.0.1:%[2]d", "--workers", "2"]
  health {
    tcp      = "127.0.0.1:%[2]d"
    interval = "200ms"
    timeout  = "100ms"
  }
}
`, dir, port)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	waitFor(t, "vllm RUNNING", 30*time.Second, func() bool { return glmctl(t, "status", "-c", cfg).code == 0 })
	var tree []int
	waitFor(t, "server, engine and two workers", 10*time.Second, func() bool {
		tree = descendants(t, d.cmd.Process.Pid)
		n := 0
		for _, p := range tree {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); err == nil && strings.HasPrefix(string(b), "VLLM::") {
				n++
			}
		}
		return n == 3
	})
	t.Logf("glmctl pid %d, descendants %v", d.cmd.Process.Pid, tree)
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	waitFor(t, "every descendant gone", 10*time.Second, func() bool {
		for _, p := range tree {
			if alive(p) {
				return false
			}
		}
		return true
	})
}
