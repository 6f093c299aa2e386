//go:build cgo

package gpu

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
)

func TestEnv(t *testing.T) {
	if got := Env(nil); got != nil {
		t.Errorf("Env(nil) = %q", got)
	}
	got := Env([]int{2, 0, 3})
	want := []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=2,0,3"}
	if !slices.Equal(got, want) {
		t.Errorf("Env = %q, want %q", got, want)
	}
}

func TestPreflight(t *testing.T) {
	want4 := []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1,2,3"}
	cfg := &config.GPU{Required: true, Count: 4, MinFreeMemory: 70 * gib}
	tests := []struct {
		name     string
		gpus     int
		change   func(f *fakeNVML)
		cfg      *config.GPU
		wanted   []int
		problems []string
	}{
		{name: "pass", gpus: 4, cfg: cfg, wanted: []int{0, 1, 2, 3}},
		{name: "nil config checks health only", gpus: 4, wanted: []int{0, 1, 2, 3},
			change: func(f *fakeNVML) { f.set(0, func(s *fakeState) { s.used = 79 * gib }) }},
		{
			name: "too few GPUs", gpus: 2, cfg: cfg, wanted: []int{0, 1, 2, 3},
			problems: []string{
				"NVML sees 2 GPUs (0: NVIDIA H100 80GB HBM3 " + uuidOf(0) + ", 1: NVIDIA H100 80GB HBM3 " + uuidOf(1) + "), need 4 (gpu.count)",
				"GPU 2: not found: NVML sees 2 GPUs (0: NVIDIA H100 80GB HBM3 " + uuidOf(0) + ", 1: NVIDIA H100 80GB HBM3 " + uuidOf(1) + ")",
				"GPU 3: not found: NVML sees 2 GPUs (0: NVIDIA H100 80GB HBM3 " + uuidOf(0) + ", 1: NVIDIA H100 80GB HBM3 " + uuidOf(1) + ")",
			},
		},
		{
			name: "not enough free memory", gpus: 4, cfg: cfg, wanted: []int{0, 1, 2, 3},
			change: func(f *fakeNVML) {
				f.set(2, func(s *fakeState) {
					s.used = 68 * gib
					s.procs = []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 67 * gib}}
				})
			},
			problems: []string{"GPU 2 (NVIDIA H100 80GB HBM3, " + uuidOf(2) + "): 12.0 GiB free, need 70.0 GiB (gpu.min_free_memory); held by PIDs 4242 (67.0 GiB)"},
		},
		{
			name: "ECC errors and remap pending", gpus: 4, cfg: cfg, wanted: []int{0, 1, 2, 3},
			change: func(f *fakeNVML) {
				f.set(1, func(s *fakeState) { s.ecc = 3 })
				f.set(3, func(s *fakeState) { s.pending = true })
			},
			problems: []string{
				"GPU 1 (NVIDIA H100 80GB HBM3, " + uuidOf(1) + "): 3 uncorrected ECC errors since the driver loaded, need 0 (reset the GPU: nvidia-smi -r -i 1)",
				"GPU 3 (NVIDIA H100 80GB HBM3, " + uuidOf(3) + "): row remapping pending, need a GPU reset (nvidia-smi -r -i 3)",
			},
		},
		{
			name: "ECC checked without count", gpus: 4, cfg: &config.GPU{MinFreeMemory: 70 * gib}, wanted: []int{0, 1, 2, 3},
			change:   func(f *fakeNVML) { f.set(3, func(s *fakeState) { s.ecc = 1 }) },
			problems: []string{"GPU 3 (NVIDIA H100 80GB HBM3, " + uuidOf(3) + "): 1 uncorrected ECC error since the driver loaded, need 0 (reset the GPU: nvidia-smi -r -i 3)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNVML(t, tt.gpus)
			if tt.change != nil {
				tt.change(f)
			}
			m := mustOpen(t, f, nil)
			env, err := m.Preflight(context.Background(), tt.wanted, tt.cfg)
			if !slices.Equal(env, want4) {
				t.Errorf("env = %q, want %q", env, want4)
			}
			if tt.problems == nil {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				return
			}
			var pe *PreflightError
			if !errors.As(err, &pe) {
				t.Fatalf("Preflight error = %v, want a *PreflightError", err)
			}
			if want := tt.name == "not enough free memory"; pe.MemoryOnly != want {
				t.Errorf("MemoryOnly = %v, want %v", pe.MemoryOnly, want)
			}
			if !slices.Equal(pe.Problems, tt.problems) {
				t.Errorf("problems:\n got %q\nwant %q", pe.Problems, tt.problems)
			}
			if got, want := err.Error(), strings.Join(tt.problems, "; "); got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
}

func TestPreflightOnlyWanted(t *testing.T) {
	f := newFakeNVML(t, 4)
	f.set(3, func(s *fakeState) { s.ecc = 2; s.used = 80 * gib })
	m := mustOpen(t, f, nil)
	env, err := m.Preflight(context.Background(), []int{1, 0}, &config.GPU{Count: 4, MinFreeMemory: 70 * gib})
	if err != nil {
		t.Fatalf("Preflight of GPUs 1,0 failed on GPU 3's state: %v", err)
	}
	if want := []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=1,0"}; !slices.Equal(env, want) {
		t.Errorf("env = %q, want %q", env, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Preflight(ctx, []int{0}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Preflight on a cancelled context: %v", err)
	}
}

func TestPreStartHook(t *testing.T) {
	vllm := &config.Program{Name: "vllm", GPUs: []int{0, 1, 2, 3}}
	ui := &config.Program{Name: "ui"}
	wantEnv := []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1,2,3"}
	ctx := context.Background()

	f := newFakeNVML(t, 4)
	f.set(2, func(s *fakeState) { s.used = 70 * gib })
	var logs bytes.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	m := mustOpen(t, f, logger)
	missing := errors.New("NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA driver on this machine)")

	t.Run("program without GPUs", func(t *testing.T) {
		env, err := m.PreStartHook(&config.GPU{Required: true, Count: 8}, logger)(ctx, ui)
		if env != nil || err != nil {
			t.Errorf("hook = %q, %v; want nil, nil", env, err)
		}
	})
	t.Run("pass", func(t *testing.T) {
		env, err := m.PreStartHook(&config.GPU{Required: true, Count: 4, MinFreeMemory: 1 * gib}, logger)(ctx, vllm)
		if err != nil || !slices.Equal(env, wantEnv) {
			t.Errorf("hook = %q, %v", env, err)
		}
	})
	t.Run("required fails", func(t *testing.T) {
		env, err := m.PreStartHook(&config.GPU{Required: true, MinFreeMemory: 70 * gib}, logger)(ctx, vllm)
		var pe *PreflightError
		if env != nil || !errors.As(err, &pe) {
			t.Fatalf("hook = %q, %v; want nil and a *PreflightError", env, err)
		}
		if want := "gpu preflight: GPU 2 (NVIDIA H100 80GB HBM3, " + uuidOf(2) + "): 10.0 GiB free, need 70.0 GiB (gpu.min_free_memory)"; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	})
	t.Run("not required warns", func(t *testing.T) {
		logs.Reset()
		env, err := m.PreStartHook(&config.GPU{MinFreeMemory: 70 * gib}, logger)(ctx, vllm)
		if err != nil || !slices.Equal(env, wantEnv) {
			t.Fatalf("hook = %q, %v; want the env and no error", env, err)
		}
		if got := logs.String(); !strings.Contains(got, "[WARN]") || !strings.Contains(got, "10.0 GiB free, need 70.0 GiB") {
			t.Errorf("log = %q, want a warning with the problem", got)
		}
	})
	t.Run("NVML missing and required", func(t *testing.T) {
		env, err := PreStartHook(nil, missing, &config.GPU{Required: true}, logger)(ctx, vllm)
		if env != nil || err == nil || err.Error() != "gpu preflight: "+missing.Error() {
			t.Errorf("hook = %q, %v", env, err)
		}
	})
	t.Run("NVML missing, not required", func(t *testing.T) {
		logs.Reset()
		env, err := PreStartHook(nil, missing, &config.GPU{}, logger)(ctx, vllm)
		if err != nil || !slices.Equal(env, wantEnv) {
			t.Errorf("hook = %q, %v", env, err)
		}
		if !strings.Contains(logs.String(), "libnvidia-ml.so.1 not found") {
			t.Errorf("log = %q, want the reason", logs.String())
		}
	})
	t.Run("no gpu block", func(t *testing.T) {
		env, err := PreStartHook(nil, missing, nil, logger)(ctx, vllm)
		if err != nil || !slices.Equal(env, wantEnv) {
			t.Errorf("hook = %q, %v", env, err)
		}
	})
}

func TestPreStartHookWaitsForRelease(t *testing.T) {
	ctx := context.Background()
	vllm := &config.Program{Name: "vllm", GPUs: []int{0, 1}}
	wantEnv := []string{"CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1"}
	hold := func(f *fakeNVML) {
		f.set(1, func(s *fakeState) {
			s.used = 75 * gib
			s.procs = []nvml.ProcessInfo{{Pid: 100, UsedGpuMemory: 74 * gib}}
		})
	}
	release := func(f *fakeNVML) { f.set(1, func(s *fakeState) { s.used = 1 * gib; s.procs = nil }) }

	t.Run("first start does not wait", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		hold(f)
		m := mustOpen(t, f, nil)
		hook := m.PreStartHook(&config.GPU{Required: true, MinFreeMemory: 70 * gib, ReleaseTimeout: time.Minute}, nil)
		start := time.Now()
		if _, err := hook(ctx, vllm); err == nil {
			t.Fatal("hook passed with GPU 1 full")
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("first start took %s: it waited", took)
		}
	})

	t.Run("restart waits until released", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		m := mustOpen(t, f, nil)
		hook := m.PreStartHook(&config.GPU{Required: true, MinFreeMemory: 70 * gib, ReleaseTimeout: time.Minute}, nil)
		if env, err := hook(ctx, vllm); err != nil || !slices.Equal(env, wantEnv) {
			t.Fatalf("first start: %q, %v", env, err)
		}
		hold(f) // the old run's worker lingers
		type result struct {
			env []string
			err error
		}
		done := make(chan result, 1)
		go func() {
			env, err := hook(ctx, vllm)
			done <- result{env, err}
		}()
		base := f.calls()
		waitFor(t, "three re-checks", func() bool { return f.calls() >= base+6 })
		select {
		case r := <-done:
			t.Fatalf("hook returned %q, %v while GPU 1 was held", r.env, r.err)
		default:
		}
		release(f)
		select {
		case r := <-done:
			if r.err != nil || !slices.Equal(r.env, wantEnv) {
				t.Fatalf("hook after release = %q, %v", r.env, r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("hook did not return after the release")
		}
	})

	t.Run("restart gives up after release_timeout", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		m := mustOpen(t, f, nil)
		hook := m.PreStartHook(&config.GPU{Required: true, MinFreeMemory: 70 * gib, ReleaseTimeout: 50 * time.Millisecond}, nil)
		if _, err := hook(ctx, vllm); err != nil {
			t.Fatalf("first start: %v", err)
		}
		hold(f)
		env, err := hook(ctx, vllm)
		var pe *PreflightError
		if env != nil || !errors.As(err, &pe) || !pe.MemoryOnly {
			t.Fatalf("hook = %q, %v; want a memory PreflightError", env, err)
		}
		want := "gpu preflight: GPU 1 (NVIDIA H100 80GB HBM3, " + uuidOf(1) + "): 5.0 GiB free, need 70.0 GiB (gpu.min_free_memory); held by PIDs 100 (74.0 GiB) (still, after waiting "
		if got := err.Error(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "gpu.release_timeout)") {
			t.Errorf("error = %q, want it to start with %q", got, want)
		}
	})

	t.Run("restart does not wait on ECC errors", func(t *testing.T) {
		f := newFakeNVML(t, 4)
		m := mustOpen(t, f, nil)
		hook := m.PreStartHook(&config.GPU{Required: true, MinFreeMemory: 70 * gib, ReleaseTimeout: time.Minute}, nil)
		if _, err := hook(ctx, vllm); err != nil {
			t.Fatalf("first start: %v", err)
		}
		hold(f)
		f.set(0, func(s *fakeState) { s.ecc = 1 })
		start := time.Now()
		if _, err := hook(ctx, vllm); err == nil || !strings.Contains(err.Error(), "uncorrected ECC error") {
			t.Fatalf("hook = %v, want the ECC problem", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %s: it waited", took)
		}
	})
}
