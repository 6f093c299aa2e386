package daemon

import (
	"context"

	"github.com/glmctl/glmctl/internal/gpu"
)

// onXID returns the handler of critical XID events: with gpu.restart_on_xid
// it restarts, in the background, the programs whose gpus include the GPU
// (a burst of events restarts each program once). The event itself is
// already logged and counted by the GPU monitor.
func (d *Daemon) onXID(ctx context.Context) func(gpuIndex int, uuid string, xid uint64) {
	return func(gpuIndex int, uuid string, xid uint64) {
		cfg := d.config()
		if cfg.GPU == nil || !cfg.GPU.RestartOnXID {
			return
		}
		var names []string
		d.xidMu.Lock()
		if d.xidRestarting == nil {
			d.xidRestarting = map[string]bool{}
		}
		for _, n := range gpu.ProgramsUsing(cfg, gpuIndex) {
			if !d.xidRestarting[n] {
				d.xidRestarting[n] = true
				names = append(names, n)
			}
		}
		d.xidMu.Unlock()
		if len(names) == 0 {
			return
		}
		d.logger.Warn("restarting programs after a critical XID (gpu.restart_on_xid)",
			"gpu", gpuIndex, "uuid", uuid, "xid", xid, "programs", names)
		d.xidRestarts.Add(1)
		go func() {
			defer d.xidRestarts.Done()
			defer func() {
				d.xidMu.Lock()
				for _, n := range names {
					delete(d.xidRestarting, n)
				}
				d.xidMu.Unlock()
			}()
			if err := d.sup.Restart(ctx, names...); err != nil && ctx.Err() == nil {
				d.logger.Error("restart after XID failed", "programs", names, "error", err)
			}
		}()
	}
}
