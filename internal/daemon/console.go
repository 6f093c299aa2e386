package daemon

import (
	"github.com/glmctl/glmctl/internal/console"
	"github.com/glmctl/glmctl/internal/gpu"
	"github.com/glmctl/glmctl/internal/keys"
)

// consoleBackend adapts the daemon to the web console: the control socket's
// backend, plus the keys in force, the guard's files and the GPUs.
type consoleBackend struct{ *backend }

var _ console.Backend = consoleBackend{}

// Keys implements console.Backend: the guard's keys, following reloads.
func (c consoleBackend) Keys() *keys.Set {
	if c.d.guard == nil {
		return nil
	}
	return c.d.guard.Keys()
}

// GuardFiles implements console.Backend.
func (c consoleBackend) GuardFiles() (string, string) {
	if c.d.guard == nil {
		return "", ""
	}
	return c.d.guard.FilePaths()
}

// GPUs implements console.Backend.
func (c consoleBackend) GPUs() ([]gpu.Device, error) {
	if c.d.gpus != nil {
		return c.d.gpus.Snapshot()
	}
	return nil, c.d.gpuErr
}

// newConsole builds the web console of the config's console block.
func (d *Daemon) newConsole(hmacKey []byte) error {
	cfg := d.config()
	if cfg.Console == nil {
		return nil
	}
	opts := console.Options{
		Listen:       cfg.Console.Listen,
		Backend:      consoleBackend{&backend{d: d}},
		Gatherer:     d.registry,
		Logger:       d.logger.Named("console"),
		AuditHMACKey: hmacKey,
	}
	if d.audit != nil {
		opts.Audit = d.audit
		opts.AuditPath = cfg.Audit.Path
	}
	c, err := console.New(opts)
	if err != nil {
		return err
	}
	d.console = c
	return nil
}
