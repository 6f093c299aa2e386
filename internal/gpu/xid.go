package gpu

import (
	"context"
	"fmt"
	"slices"

	"github.com/glmctl/glmctl/internal/config"
)

// xidMeanings are short notes on well-known critical XIDs (NVIDIA's XID
// catalogue), logged with each event so an operator knows where to look.
var xidMeanings = map[uint64]string{
	13:  "graphics engine exception (often an application bug)",
	31:  "GPU memory page fault (often an application bug)",
	43:  "GPU stopped processing (application fault)",
	45:  "preemptive cleanup after an earlier error",
	48:  "double-bit ECC error: reset the GPU",
	61:  "internal micro-controller breakpoint/warning",
	62:  "internal micro-controller halt",
	63:  "ECC page retirement or row remapping recorded",
	64:  "ECC page retirement or row remapping failure",
	74:  "NVLink error",
	79:  "GPU has fallen off the bus",
	92:  "high single-bit ECC error rate",
	94:  "contained ECC error: restart the affected application",
	95:  "uncontained ECC error: reset the GPU",
	119: "GSP RPC timeout",
	120: "GSP error",
}

// XIDMeaning returns a short note on a well-known XID, or "".
func XIDMeaning(xid uint64) string { return xidMeanings[xid] }

// WatchXID watches NVML for critical XID events until ctx ends or the
// Monitor is closed. Each event is logged, counted for its GPU (see
// XIDErrors and the collector's glmctl_gpu_xid_errors_total) and passed to
// onXID when it is not nil; onXID runs on the watcher's goroutine, so it
// should not block for long. WatchXID returns nil when stopped, and an
// error only when it cannot watch at all (no GPU supports the events): log
// that, it is no reason to stop the daemon.
func (m *Monitor) WatchXID(ctx context.Context, onXID func(gpuIndex int, uuid string, xid uint64)) error {
	m.mu.Lock()
	if m.closed.Load() {
		m.mu.Unlock()
		return ErrClosed
	}
	m.wg.Add(1)
	m.mu.Unlock()
	defer m.wg.Done()
	stop := make(chan struct{})
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-m.closing:
		case <-done:
			return
		}
		close(stop)
	}()
	err := m.b.watchXID(stop, m.xidWait, func(index int, xid uint64) {
		if index < 0 || index >= len(m.info) {
			m.logger.Error("GPU XID critical error on an unknown GPU", "gpu", index, "xid", xid)
			return
		}
		g := m.info[index]
		m.lastXID[index].Store(xid)
		n := m.xid[index].Add(1)
		args := []any{"gpu", g.index, "uuid", g.uuid, "name", g.name, "xid", xid, "count", n}
		if s := XIDMeaning(xid); s != "" {
			args = append(args, "meaning", s)
		}
		m.logger.Error("GPU XID critical error", args...)
		if onXID != nil {
			onXID(g.index, g.uuid, xid)
		}
	})
	if err != nil {
		return fmt.Errorf("watch XID events: %w", err)
	}
	return nil
}

// ProgramsUsing names the programs of cfg whose gpus list holds gpuIndex,
// in config order: the ones to restart after an XID on that GPU.
func ProgramsUsing(cfg *config.Config, gpuIndex int) []string {
	if cfg == nil {
		return nil
	}
	var names []string
	for _, p := range cfg.Programs {
		if slices.Contains(p.GPUs, gpuIndex) {
			names = append(names, p.Name)
		}
	}
	return names
}
