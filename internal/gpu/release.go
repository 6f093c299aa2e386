package gpu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
)

// ErrStillHeld is wrapped by WaitReleased's error when the processes still
// hold GPU memory at the deadline.
var ErrStillHeld = errors.New("GPU memory still held")

// holder is one process of interest found on one GPU.
type holder struct {
	gpu gpuInfo
	p   Process
}

// WaitReleased waits until none of pids holds memory on any GPU, polling
// NVML's compute processes, for at most timeout (0: until ctx ends). Pass
// the stopped program's whole process tree (see ProcessTree, taken while
// the program still ran): vLLM's orphaned workers are what keeps memory
// busy. On timeout the error wraps ErrStillHeld and names each PID, the GPU
// and the memory it holds. A nil Monitor or no pids returns nil at once.
func (m *Monitor) WaitReleased(ctx context.Context, pids []int, timeout time.Duration) error {
	if m == nil || len(pids) == 0 {
		return nil
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	tick := time.NewTicker(m.pollInterval)
	defer tick.Stop()
	logged := false
	for {
		held, err := m.holders(pids)
		if err == nil && len(held) == 0 {
			if logged {
				m.logger.Info("GPU memory released", "after", time.Since(start).Round(time.Millisecond).String())
			}
			return nil
		}
		if !logged && len(held) > 0 {
			m.logger.Info("waiting for stopped processes to release GPU memory", "held", formatHolders(held))
			logged = true
		}
		select {
		case <-m.closing:
			return ErrClosed
		case <-ctx.Done():
			waited := time.Since(start).Round(time.Millisecond)
			if len(held) == 0 && err != nil {
				return fmt.Errorf("gpu release: NVML process query still failing after %s: %w", waited, err)
			}
			cause := ctx.Err()
			if errors.Is(cause, context.DeadlineExceeded) && timeout > 0 {
				cause = fmt.Errorf("gave up after %s (gpu.release_timeout)", waited)
			}
			return fmt.Errorf("%w: %s: %w", ErrStillHeld, formatHolders(held), cause)
		case <-tick.C:
		}
	}
}

// ReleaseHook returns the launcher's AwaitRelease hook on m (nil m: a hook
// that does nothing). Before a program with gpus starts again it waits, up
// to cfg.ReleaseTimeout (0: no wait), until none of the previous run's PIDs
// holds memory on any GPU: vLLM's workers otherwise make the new run fail
// for lack of memory. When they still hold it, the start fails with which
// PID holds how much on which GPU if cfg.Required, else it is logged and
// the program starts anyway.
func ReleaseHook(m *Monitor, cfg *config.GPU, logger hclog.Logger) func(ctx context.Context, p *config.Program, pids []int) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return func(ctx context.Context, p *config.Program, pids []int) error {
		if m == nil || cfg == nil || cfg.ReleaseTimeout <= 0 || len(p.GPUs) == 0 {
			return nil
		}
		err := m.WaitReleased(ctx, pids, cfg.ReleaseTimeout)
		if err == nil || ctx.Err() != nil || cfg.Required {
			return err
		}
		logger.Warn("previous run still holds GPU memory, starting anyway (gpu.required = false)",
			"program", p.Name, "problem", err.Error())
		return nil
	}
}

// holders lists which of pids hold memory on which GPU. When some GPUs
// cannot be queried it returns what it found and the error.
func (m *Monitor) holders(pids []int) ([]holder, error) {
	var (
		held []holder
		errs []error
	)
	for _, g := range m.info {
		ps, err := m.b.processes(g.index)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: list processes: %w", label(g.index, g.name, g.uuid), err))
			continue
		}
		for _, p := range ps {
			if slices.Contains(pids, p.PID) {
				held = append(held, holder{gpu: g, p: p})
			}
		}
	}
	return held, errors.Join(errs...)
}

// formatHolders renders "PID 1234 on GPU 0 (NAME, GPU-…) 30.0 GiB, …".
func formatHolders(hs []holder) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = fmt.Sprintf("PID %d on %s", h.p.PID, label(h.gpu.index, h.gpu.name, h.gpu.uuid))
		if h.p.UsedMemory > 0 {
			parts[i] += " " + GiB(h.p.UsedMemory)
		}
	}
	return strings.Join(parts, ", ")
}
