package gpu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTree starts sh with two sleeping children and one grandchild, in its
// own process group, and kills the group at the end of the test.
func startTree(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60 & sleep 61 & sh -c 'sleep 62 & wait' & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// commOf reads a process's command name.
func commOf(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

func TestProcessTree(t *testing.T) {
	cmd := startTree(t)
	root := cmd.Process.Pid
	var (
		tree   []int
		sleeps int
	)
	// sh forks and execs its children asynchronously: wait until the root
	// has four descendants, three of them sleeps.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		tree, err = ProcessTree(root)
		if err != nil {
			t.Fatalf("ProcessTree: %v", err)
		}
		sleeps = 0
		for _, pid := range tree[1:] {
			if commOf(pid) == "sleep" {
				sleeps++
			}
		}
		if (len(tree) == 5 && sleeps == 3) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(tree) != 5 || tree[0] != root || sleeps != 3 {
		t.Fatalf("tree = %v with %d sleeps, want the root and 4 descendants, 3 of them sleeps", tree, sleeps)
	}
	if slices.Contains(tree, os.Getpid()) {
		t.Errorf("tree %v holds the test's own PID", tree)
	}

	_ = syscall.Kill(-root, syscall.SIGKILL)
	_ = cmd.Wait()
	if _, err := ProcessTree(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ProcessTree of a reaped PID: %v, want os.ErrNotExist", err)
	}
}

func TestParentPID(t *testing.T) {
	dir := t.TempDir()
	for stat, want := range map[string]int{
		"123 (sleep) S 42 123 123 0 -1 4194304":          42,
		"124 (we ird) (name)) R 7 124 1 0 -1 4194560 99": 7,
		"125 (x) Z 1": 1,
	} {
		p := filepath.Join(dir, "stat")
		if err := os.WriteFile(p, []byte(stat+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := parentPID(p)
		if err != nil || got != want {
			t.Errorf("parentPID(%q) = %d, %v; want %d", stat, got, err, want)
		}
	}
	p := filepath.Join(dir, "bad")
	if err := os.WriteFile(p, []byte("126 no parens"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parentPID(p); err == nil {
		t.Error("parentPID of a malformed stat: no error")
	}
}
