//go:build cgo

package gpu

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/glmctl/glmctl/internal/config"
)

func TestReleaseHook(t *testing.T) {
	ctx := context.Background()
	prog := &config.Program{Name: "vllm", GPUs: []int{0, 1}}
	held := func(f *fakeNVML) {
		f.set(1, func(s *fakeState) { s.procs = []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 30 * gib}} })
	}

	t.Run("required: still held fails the start", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		held(f)
		m := mustOpen(t, f, nil)
		hook := ReleaseHook(m, &config.GPU{Required: true, ReleaseTimeout: 50 * time.Millisecond}, nil)
		err := hook(ctx, prog, []int{4242, 4243})
		if !errors.Is(err, ErrStillHeld) || !strings.Contains(err.Error(), "PID 4242 on GPU 1") {
			t.Fatalf("hook = %v, want ErrStillHeld naming PID 4242 on GPU 1", err)
		}
	})

	t.Run("not required: warns and starts", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		held(f)
		m := mustOpen(t, f, nil)
		hook := ReleaseHook(m, &config.GPU{Required: false, ReleaseTimeout: 50 * time.Millisecond}, nil)
		if err := hook(ctx, prog, []int{4242}); err != nil {
			t.Fatalf("hook = %v, want nil with required = false", err)
		}
	})

	t.Run("waits for the release", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		held(f)
		m := mustOpen(t, f, nil)
		hook := ReleaseHook(m, &config.GPU{Required: true, ReleaseTimeout: time.Minute}, nil)
		done := make(chan error, 1)
		go func() { done <- hook(ctx, prog, []int{4242}) }()
		waitFor(t, "a few polls", func() bool { return f.calls() >= 12 })
		select {
		case err := <-done:
			t.Fatalf("hook returned %v while PID 4242 held memory", err)
		default:
		}
		f.set(1, func(s *fakeState) { s.procs = nil })
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("hook after the release: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("hook did not return after the release")
		}
	})

	t.Run("nothing to do", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		held(f)
		m := mustOpen(t, f, nil)
		for name, hook := range map[string]func(context.Context, *config.Program, []int) error{
			"nil monitor":       ReleaseHook(nil, &config.GPU{Required: true, ReleaseTimeout: time.Minute}, nil),
			"no gpu block":      ReleaseHook(m, nil, nil),
			"release_timeout 0": ReleaseHook(m, &config.GPU{Required: true}, nil),
		} {
			if err := hook(ctx, prog, []int{4242}); err != nil {
				t.Errorf("%s: hook = %v", name, err)
			}
		}
		if err := ReleaseHook(m, &config.GPU{Required: true, ReleaseTimeout: time.Minute}, nil)(ctx, &config.Program{Name: "ui"}, []int{4242}); err != nil {
			t.Errorf("program without gpus: %v", err)
		}
	})
}
