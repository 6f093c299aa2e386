package gpu

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
)

// PreflightError lists every problem a preflight found, one line each, e.g.
// "GPU 2 (NVIDIA H100 80GB HBM3, GPU-…): 12.0 GiB free, need 70.0 GiB".
type PreflightError struct {
	Problems []string
	// MemoryOnly is set when every problem is too little free memory, which
	// a program that just stopped may still be releasing.
	MemoryOnly bool
}

// Error joins the problems with "; ", fit for one status line.
func (e *PreflightError) Error() string {
	return strings.Join(e.Problems, "; ")
}

// Env is the environment a program using gpus gets: CUDA_DEVICE_ORDER so
// that CUDA numbers GPUs as NVML (and nvidia-smi) do, and
// CUDA_VISIBLE_DEVICES listing gpus in the order given. It is nil for no
// gpus.
func Env(gpus []int) []string {
	if len(gpus) == 0 {
		return nil
	}
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = strconv.Itoa(g)
	}
	return []string{
		"CUDA_DEVICE_ORDER=PCI_BUS_ID",
		"CUDA_VISIBLE_DEVICES=" + strings.Join(ids, ","),
	}
}

// Preflight checks the GPUs a program wants before it starts: NVML sees at
// least cfg.Count GPUs, every wanted GPU exists, has at least
// cfg.MinFreeMemory free, no uncorrected ECC errors and no pending or
// failed row remapping. It returns Env(wanted) in every case, so a caller
// that only warns (cfg.Required = false) can start the program anyway; a
// failed check is a *PreflightError holding every problem found. A nil cfg
// checks only that the GPUs exist and are healthy.
func (m *Monitor) Preflight(ctx context.Context, wanted []int, cfg *config.GPU) ([]string, error) {
	env := Env(wanted)
	if err := ctx.Err(); err != nil {
		return env, err
	}
	if m.closed.Load() {
		return env, ErrClosed
	}
	if cfg == nil {
		cfg = &config.GPU{}
	}
	var (
		problems   []string
		memoryOnly = true
	)
	n := len(m.info)
	if cfg.Count > 0 && n < cfg.Count {
		problems = append(problems, fmt.Sprintf("NVML sees %s%s, need %d (gpu.count)", plural(n, "GPU"), m.namesUUIDs(), cfg.Count))
		memoryOnly = false
	}
	for _, idx := range wanted {
		if idx < 0 || idx >= n {
			problems = append(problems, fmt.Sprintf("GPU %d: not found: NVML sees %s%s", idx, plural(n, "GPU"), m.namesUUIDs()))
			memoryOnly = false
			continue
		}
		d, err := m.read(idx)
		if err != nil {
			problems = append(problems, err.Error())
			memoryOnly = false
			continue
		}
		ps, memory := checkDevice(&d, cfg)
		problems = append(problems, ps...)
		memoryOnly = memoryOnly && memory
		m.logger.Debug("GPU checked", "gpu", d.Index, "name", d.Name, "uuid", d.UUID,
			"free", GiB(d.MemoryFree), "total", GiB(d.MemoryTotal))
	}
	if len(problems) > 0 {
		return env, &PreflightError{Problems: problems, MemoryOnly: memoryOnly}
	}
	return env, nil
}

// checkDevice returns what is wrong with d for cfg, one line per problem,
// and whether nothing but free memory is wrong.
func checkDevice(d *Device, cfg *config.GPU) (problems []string, memoryOnly bool) {
	if cfg.MinFreeMemory > 0 && d.MemoryFree < uint64(cfg.MinFreeMemory) {
		p := fmt.Sprintf("%s: %s free, need %s (gpu.min_free_memory)", d.Label(), GiB(d.MemoryFree), GiB(uint64(cfg.MinFreeMemory)))
		if len(d.Processes) > 0 {
			p += "; held by PIDs " + formatProcesses(d.Processes)
		}
		problems = append(problems, p)
	}
	memoryOnly = true
	if d.Has(FieldECC) && d.ECCUncorrected > 0 {
		problems = append(problems, fmt.Sprintf("%s: %s since the driver loaded, need 0 (reset the GPU: nvidia-smi -r -i %d)", d.Label(), plural(int(d.ECCUncorrected), "uncorrected ECC error"), d.Index))
		memoryOnly = false
	}
	if d.Has(FieldRemap) && d.RemapFailed {
		problems = append(problems, fmt.Sprintf("%s: row remapping failed, the GPU needs service", d.Label()))
		memoryOnly = false
	} else if d.Has(FieldRemap) && d.RemapPending {
		problems = append(problems, fmt.Sprintf("%s: row remapping pending, need a GPU reset (nvidia-smi -r -i %d)", d.Label(), d.Index))
		memoryOnly = false
	}
	return problems, memoryOnly
}

// namesUUIDs renders " (0: NAME GPU-…, 1: …)" for messages about the count.
func (m *Monitor) namesUUIDs() string {
	if len(m.info) == 0 {
		return ""
	}
	parts := make([]string, len(m.info))
	for i, g := range m.info {
		parts[i] = fmt.Sprintf("%d: %s %s", g.index, g.name, g.uuid)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// PreStartHook is the launcher's PreStart hook on this Monitor; see
// PreStartHook (the function) for what it does.
func (m *Monitor) PreStartHook(cfg *config.GPU, logger hclog.Logger) func(ctx context.Context, p *config.Program) ([]string, error) {
	return PreStartHook(m, nil, cfg, logger)
}

// PreStartHook returns the launcher's PreStart hook. m is the Monitor, or
// nil when Open failed with openErr. The hook:
//   - gives programs without gpus nil, nil;
//   - gives the others Env(p.GPUs) after a Preflight when cfg is set (no gpu
//     block: no checks);
//   - on a restart (any start after one it let through) whose only problem
//     is free memory, waits up to cfg.ReleaseTimeout for the previous run's
//     processes to release it, re-checking, before it gives up;
//   - on a failed check (or NVML unavailable) fails with the reason when
//     cfg.Required, else logs a warning and returns the env anyway.
func PreStartHook(m *Monitor, openErr error, cfg *config.GPU, logger hclog.Logger) func(ctx context.Context, p *config.Program) ([]string, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	var (
		mu      sync.Mutex
		started = map[string]bool{} // programs this hook has let start
	)
	return func(ctx context.Context, p *config.Program) ([]string, error) {
		if len(p.GPUs) == 0 {
			return nil, nil
		}
		if cfg == nil {
			return Env(p.GPUs), nil
		}
		var (
			env = Env(p.GPUs)
			err error
		)
		switch {
		case m != nil:
			env, err = m.Preflight(ctx, p.GPUs, cfg)
			mu.Lock()
			restart := started[p.Name]
			mu.Unlock()
			if restart && memoryOnly(err) && cfg.ReleaseTimeout > 0 {
				env, err = m.awaitMemory(ctx, p, cfg, err)
			}
		case openErr != nil:
			err = openErr
		default:
			err = ErrUnavailable
		}
		if err == nil {
			logger.Info("GPU preflight passed", "program", p.Name, "gpus", p.GPUs)
		} else {
			if ctx.Err() != nil || cfg.Required {
				return nil, fmt.Errorf("gpu preflight: %w", err)
			}
			logger.Warn("GPU preflight failed, starting anyway (gpu.required = false)", "program", p.Name, "problem", err.Error())
		}
		mu.Lock()
		started[p.Name] = true
		mu.Unlock()
		return env, nil
	}
}

// memoryOnly reports whether err is a preflight failing on free memory alone.
func memoryOnly(err error) bool {
	var pe *PreflightError
	return errors.As(err, &pe) && pe.MemoryOnly
}

// awaitMemory re-runs the preflight for a restarting program until it
// passes, fails on something other than memory, or cfg.ReleaseTimeout ends.
func (m *Monitor) awaitMemory(ctx context.Context, p *config.Program, cfg *config.GPU, first error) ([]string, error) {
	m.logger.Info("waiting for the previous run to release GPU memory",
		"program", p.Name, "timeout", cfg.ReleaseTimeout.String(), "problem", first.Error())
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, cfg.ReleaseTimeout)
	defer cancel()
	tick := time.NewTicker(m.pollInterval)
	defer tick.Stop()
	last := first
	for {
		select {
		case <-wctx.Done():
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return Env(p.GPUs), fmt.Errorf("%w (still, after waiting %s for GPU memory to be released: gpu.release_timeout)",
				last, time.Since(start).Round(time.Millisecond))
		case <-m.closing:
			return nil, ErrClosed
		case <-tick.C:
		}
		env, err := m.Preflight(wctx, p.GPUs, cfg)
		switch {
		case memoryOnly(err):
			last = err
		case err != nil && wctx.Err() != nil && ctx.Err() == nil:
			// The deadline hit mid-check: the next turn reports last.
		default:
			if err == nil {
				m.logger.Info("GPU memory released", "program", p.Name, "after", time.Since(start).Round(time.Millisecond).String())
			}
			return env, err
		}
	}
}

// IsUnavailable reports whether err says NVML cannot be used at all.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// plural renders "1 GPU", "2 GPUs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
