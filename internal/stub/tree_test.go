package stub

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procInfo reads a process's parent pid, state and argv[0]; ok is false
// once it is gone.
func procInfo(pid int) (ppid int, state byte, argv0 string, ok bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, "", false
	}
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	ppid, _ = strconv.Atoi(f[1])
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	argv0, _, _ = strings.Cut(string(cmdline), "\x00")
	return ppid, f[0][0], argv0, true
}

// alive reports whether pid runs (exists and is not a zombie).
func alive(pid int) bool {
	_, state, _, ok := procInfo(pid)
	return ok && state != 'Z'
}

// childrenOf lists the live children of pid by argv[0].
func childrenOf(pid int) map[string]int {
	out := map[string]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state, argv0, ok := procInfo(p); ok && ppid == pid && state != 'Z' {
			out[argv0] = p
		}
	}
	return out
}

// mustFindTree waits for the server's engine and its n workers.
func mustFindTree(tb testing.TB, server, n int) (engine int, workers []int) {
	tb.Helper()
	waitFor(tb, 10*time.Second, "the engine and its workers", func() bool {
		engine = childrenOf(server)["VLLM::EngineCore"]
		if engine == 0 {
			return false
		}
		ws := childrenOf(engine)
		workers = workers[:0]
		for i := range n {
			if p := ws["VLLM::Worker_TP"+strconv.Itoa(i)]; p != 0 {
				workers = append(workers, p)
			}
		}
		return len(workers) == n
	})
	tb.Cleanup(func() { // orphans are ours to end, by pid
		for _, p := range append([]int{engine}, workers...) {
			if alive(p) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
	return engine, workers
}

// TestProcessTree: --workers builds vLLM's tree; a graceful stop ends it,
// SIGKILL of the server alone orphans it, and the engine's death makes the
// server exit 0.
func TestProcessTree(t *testing.T) {
	t.Run("SIGTERM stops the whole tree", func(t *testing.T) {
		h := mustStartHelper(t, "vllm", nil, "--uds", filepath.Join(t.TempDir(), "s"), "--workers", "2")
		engine, workers := mustFindTree(t, h.cmd.Process.Pid, 2)
		if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := h.wait(t, 10*time.Second); code != 0 {
			t.Errorf("exit code %d", code)
		}
		for _, p := range append([]int{engine}, workers...) {
			waitFor(t, 5*time.Second, "pid "+strconv.Itoa(p)+" to end", func() bool { return !alive(p) })
		}
	})
	t.Run("SIGKILL of the server orphans the tree", func(t *testing.T) {
		h := mustStartHelper(t, "vllm", nil, "--uds", filepath.Join(t.TempDir(), "s"), "--workers", "2")
		engine, workers := mustFindTree(t, h.cmd.Process.Pid, 2)
		if err := h.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		h.wait(t, 10*time.Second)
		for _, p := range append([]int{engine}, workers...) {
			if !alive(p) {
				t.Errorf("pid %d ended with the server; vLLM's children outlive it", p)
			}
		}
	})
	t.Run("engine death exits 0", func(t *testing.T) {
		h := mustStartHelper(t, "vllm", nil, "--uds", filepath.Join(t.TempDir(), "s"), "--workers", "1")
		engine, _ := mustFindTree(t, h.cmd.Process.Pid, 1)
		if err := syscall.Kill(engine, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := h.wait(t, 10*time.Second); code != 0 {
			t.Errorf("exit code %d after engine death, want 0", code)
		}
	})
}
