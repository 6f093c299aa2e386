package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCheckLimitsStore (issue 11): `glmctl check` connects to the shared
// limits store and says whether it answers.
func TestCheckLimitsStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "api_keys.json"), []byte(`{"api_keys": {}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := filepath.Join(dir, "glmctl.hcl")
	src := fmt.Sprintf("guard {\n  upstream     = \"unix://%[1]s/v.sock\"\n  keys_file    = \"%[1]s/api_keys.json\"\n  limits_store = \"redis://127.0.0.1:%[2]d/0\"\n}\n", dir, port)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	r := glmctl(t, "check", "-c", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "unreachable") {
		t.Fatalf("no Redis: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed (apt-get install redis-server; .ci/run installs it): %v", err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() })
	waitFor(t, "redis-server answering", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("PING\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "+PONG")
	})
	r = glmctl(t, "check", "-c", cfg)
	if !strings.Contains(r.stdout, "reachable") || strings.Contains(r.stdout, "unreachable") {
		t.Fatalf("with Redis: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
