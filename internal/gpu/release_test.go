//go:build cgo

package gpu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && len(b) > i+2 && b[i+2] != 'Z'
}

func TestWaitReleased(t *testing.T) {
	ctx := context.Background()
	hold := func(pids ...uint32) []nvml.ProcessInfo {
		var ps []nvml.ProcessInfo
		for _, p := range pids {
			ps = append(ps, nvml.ProcessInfo{Pid: p, UsedGpuMemory: 30 * gib})
		}
		return ps
	}

	t.Run("nothing to wait for", func(t *testing.T) {
		var m *Monitor
		if err := m.WaitReleased(ctx, []int{1}, time.Second); err != nil {
			t.Errorf("nil Monitor: %v", err)
		}
		f := newFakeNVML(t, 4)
		f.set(0, func(s *fakeState) { s.procs = hold(999) })
		m = mustOpen(t, f, nil)
		if err := m.WaitReleased(ctx, nil, time.Second); err != nil {
			t.Errorf("no pids: %v", err)
		}
		if err := m.WaitReleased(ctx, []int{100, 101}, time.Second); err != nil {
			t.Errorf("other processes only: %v", err)
		}
	})

	t.Run("lingering then released", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		f.set(0, func(s *fakeState) { s.procs = hold(100, 999) })
		f.set(1, func(s *fakeState) { s.procs = hold(101) })
		m := mustOpen(t, f, nil)
		done := make(chan error, 1)
		go func() { done <- m.WaitReleased(ctx, []int{100, 101, 102}, 10*time.Second) }()
		waitFor(t, "three polls", func() bool { return f.calls() >= 12 })
		select {
		case err := <-done:
			t.Fatalf("WaitReleased returned %v while PIDs 100 and 101 held memory", err)
		default:
		}
		f.set(0, func(s *fakeState) { s.procs = hold(999) })
		waitFor(t, "two more polls", func() bool { return f.calls() >= 20 })
		select {
		case err := <-done:
			t.Fatalf("WaitReleased returned %v while PID 101 held memory", err)
		default:
		}
		f.set(1, func(s *fakeState) { s.procs = nil })
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("WaitReleased: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("WaitReleased did not return after the release")
		}
	})

	t.Run("timeout names PIDs and GPUs", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		f.set(2, func(s *fakeState) { s.procs = hold(100) })
		f.set(3, func(s *fakeState) { s.procs = []nvml.ProcessInfo{{Pid: 101, UsedGpuMemory: ^uint64(0)}} })
		m := mustOpen(t, f, nil)
		start := time.Now()
		err := m.WaitReleased(ctx, []int{100, 101}, 50*time.Millisecond)
		if !errors.Is(err, ErrStillHeld) {
			t.Fatalf("WaitReleased = %v, want ErrStillHeld", err)
		}
		if took := time.Since(start); took < 50*time.Millisecond || took > 3*time.Second {
			t.Errorf("took %s for a 50ms timeout", took)
		}
		want := "GPU memory still held: PID 100 on GPU 2 (NVIDIA H100 80GB HBM3, " + uuidOf(2) + ") 30.0 GiB, " +
			"PID 101 on GPU 3 (NVIDIA H100 80GB HBM3, " + uuidOf(3) + "): gave up after "
		if got := err.Error(); len(got) < len(want) || got[:len(want)] != want {
			t.Errorf("error = %q, want it to start with %q", got, want)
		}

		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := m.WaitReleased(cctx, []int{100}, time.Minute); !errors.Is(err, ErrStillHeld) || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v", err)
		}
	})

	t.Run("real process tree killed", func(t *testing.T) {
		cmd := startTree(t)
		root := cmd.Process.Pid
		var tree []int
		waitFor(t, "the process tree", func() bool {
			tree, _ = ProcessTree(root)
			return len(tree) == 5
		})
		f := newFakeNVML(t, 4)
		// The tree's processes hold memory on GPUs 0 and 1 while they live,
		// as vLLM's workers do.
		f.set(0, func(s *fakeState) { s.procs = hold(uint32(tree[1]), uint32(tree[2])) })
		f.set(1, func(s *fakeState) { s.procs = hold(uint32(tree[3]), uint32(tree[4]), 999) })
		f.procFilter = func(pid int) bool { return pid == 999 || alive(pid) }
		m := mustOpen(t, f, nil)

		done := make(chan error, 1)
		go func() { done <- m.WaitReleased(ctx, tree, 10*time.Second) }()
		waitFor(t, "two polls", func() bool { return f.calls() >= 8 })
		select {
		case err := <-done:
			t.Fatalf("WaitReleased returned %v while the tree lived", err)
		default:
		}
		if err := syscall.Kill(-root, syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		_ = cmd.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("WaitReleased: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("WaitReleased did not return after the tree died")
		}
	})
}
