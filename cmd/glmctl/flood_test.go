package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/internal/testutil"
)

// floodConfig runs the vLLM stand-in on a unix socket behind the guard.
const floodConfig = `
control { socket = "%[1]s/glmctl.sock" }
program "vllm" {
  command       = [glmctl_bin, "stub", "vllm", "--uds", "%[1]s/vllm.sock", "--load-time", "100ms"]
  start_timeout = "1m"
  stop_timeout  = "5s"
  backoff {
    initial = "100ms"
    max     = "1s"
  }
  health {
    http        = "http://localhost/health"
    unix_socket = "%[1]s/vllm.sock"
    interval    = "200ms"
    timeout     = "150ms"
    failures    = 2
  }
}
guard {
  listen         = "127.0.0.1:%[2]d"
  upstream       = "unix://%[1]s/vllm.sock"
  program        = "vllm"
  keys_file      = "%[1]s/api_keys.json"
  header_timeout = "5s"
}
audit { path = "%[1]s/audit.log" }
`

const floodKey = "sk-flood-0123456789abcdefghijklmnopqrstu"

// fdCount counts the open descriptors of pid.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestFloodCannotStarveSupervisor (issue 9 §1): `glmctl up` under
// RLIMIT_NOFILE 512 is flooded with anonymous connections that send a
// request head announcing a body and never send it, and with connections
// that send nothing. vllm never leaves RUNNING/BACKOFF, a legitimate
// request succeeds within seconds once the flood ends, and no descriptor
// leaks.
func TestFloodCannotStarveSupervisor(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "glmctl.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(floodConfig, dir, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "api_keys.json"),
		[]byte(`{"api_keys": {"flood": {"sha256": "`+keys.Hash(floodKey)+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// ulimit in the shell, then exec: glmctl up is the process with the
	// lowered limit (soft and hard), so it cannot raise it back.
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 512 && exec "$0" up -c "$1"`, glmctlBin, cfg)
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("glmctl up stderr:\n%s", stderr.String())
		}
	})
	d := &testDaemon{cfg: cfg}
	waitFor(t, "control socket", 20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "glmctl.sock"))
		return err == nil
	})
	waitFor(t, "vllm RUNNING", 30*time.Second, func() bool { return d.state(t, "vllm") == "RUNNING" })

	url := fmt.Sprintf("http://127.0.0.1:%d/v1/models", port)
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	legit := func() int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+floodKey)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := legit(); got != 200 {
		t.Fatalf("before the flood: %d", got)
	}
	pid := cmd.Process.Pid
	before := fdCount(t, pid)

	// The flood: 2,000 connections, half announcing a body they never
	// send (no key), half silent.
	const flood = 2000
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
			if err != nil {
				return
			}
			if i%2 == 0 {
				_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("flood: %d connections dialled", len(conns))

	// Under the flood the supervisor keeps working: probes pass, vllm stays
	// RUNNING (BACKOFF would be tolerated, never FATAL or EXITED).
	var during []int
	var maxOpen, maxFD int
	for range 10 {
		st := d.status(t)
		for _, p := range st.Programs {
			if p.Name == "vllm" && p.State != "RUNNING" && p.State != "BACKOFF" && p.State != "STARTING" {
				t.Fatalf("vllm is %s during the flood: %s", p.State, p.Message)
			}
		}
		if st.Guard != nil {
			maxOpen = max(maxOpen, st.Guard.OpenConnections)
		}
		maxFD = max(maxFD, fdCount(t, pid))
		during = append(during, legit())
		time.Sleep(300 * time.Millisecond) // sampling period of the observation, not a wait for a condition
	}
	st := d.status(t)
	t.Logf("during the flood: guard connections max %d (cap %d), descriptors max %d of 512, legitimate answers %v",
		maxOpen, st.Guard.MaxConnections, maxFD, during)
	if st.Guard.MaxConnections >= 256 {
		t.Fatalf("max_connections %d was not fitted to RLIMIT_NOFILE 512", st.Guard.MaxConnections)
	}

	// The flood ends: everything recovers by itself.
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	end := time.Now()
	waitFor(t, "a legitimate request answered 200", 15*time.Second, func() bool { return legit() == 200 })
	recovered := time.Since(end)
	waitFor(t, "descriptors back to their count before the flood", 15*time.Second, func() bool {
		return fdCount(t, pid) <= before+2
	})
	t.Logf("recovery: legitimate request answered %s after the flood ended; descriptors %d before, %d after",
		recovered.Round(time.Millisecond), before, fdCount(t, pid))
	if s := d.state(t, "vllm"); s != "RUNNING" {
		t.Fatalf("vllm %s after the flood", s)
	}
	if strings.Contains(stderr.String(), "FATAL") {
		t.Fatalf("a program went FATAL:\n%s", stderr.String())
	}
}
