package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/glmctl/glmctl/internal/control"
	"github.com/glmctl/glmctl/pkg/launcher"
)

// backend adapts the daemon to the control socket's API.
type backend struct{ d *Daemon }

// names expands "all" and checks every name exists, so an action never
// half-applies to a list with a typo in it.
func (b *backend) names(names []string) ([]string, error) {
	cfg := b.d.config()
	if len(names) == 0 {
		return nil, errors.New("name at least one program, or all")
	}
	var out []string
	for _, n := range names {
		if n == "all" {
			out = out[:0]
			for _, p := range cfg.Programs {
				out = append(out, p.Name)
			}
			return out, nil
		}
		if cfg.Program(n) == nil {
			return nil, fmt.Errorf("%w: %q (known: %s)", control.ErrNotFound, n, strings.Join(programNames(b.d), ", "))
		}
		out = append(out, n)
	}
	return out, nil
}

func programNames(d *Daemon) []string {
	var out []string
	for _, p := range d.config().Programs {
		out = append(out, p.Name)
	}
	return out
}

func (b *backend) Status(names ...string) (*control.StatusReply, error) {
	if len(names) > 0 {
		if _, err := b.names(names); err != nil {
			return nil, err
		}
	}
	sts, err := b.d.sup.Status(names...)
	if err != nil {
		return nil, err
	}
	reply := &control.StatusReply{Programs: make([]control.ProgramStatus, 0, len(sts)), GPUs: []control.GPUStatus{}}
	for _, s := range sts {
		reply.Programs = append(reply.Programs, programStatus(s))
	}
	switch {
	case b.d.gpus != nil:
		devs, err := b.d.gpus.Snapshot()
		for _, g := range devs {
			reply.GPUs = append(reply.GPUs, control.GPUStatus{Index: g.Index, Name: g.Name, UUID: g.UUID,
				MemoryUsedBytes: g.MemoryUsed, MemoryTotalBytes: g.MemoryTotal})
		}
		if err != nil {
			reply.GPUMessage = err.Error()
		}
	case b.d.gpuErr != nil:
		reply.GPUMessage = b.d.gpuErr.Error()
	}
	if g := b.d.config().Guard; g != nil {
		ready := true
		if g.Program != "" && b.d.config().Program(g.Program) != nil {
			ready = b.d.sup.Ready(g.Program)
		}
		gs := &control.GuardStatus{Listen: g.Listen, Upstream: g.Upstream, Ready: ready, FilesOK: true, LimitsStoreUp: true,
			Files: []control.FileStatus{}}
		if gd := b.d.guard; gd != nil {
			if a := gd.Addr(); a != nil {
				gs.Listen = a.String()
			}
			gs.MaxConnections, gs.OpenConnections = gd.MaxConnections(), gd.OpenConnections()
			gs.LimitsStore, gs.LimitsStoreUp = gd.LimitsStore()
			gs.PolicyRules = gd.PolicyRules()
			for _, f := range gd.Files() {
				gs.Files = append(gs.Files, control.FileStatus{Path: f.Path, SHA256: f.SHA256, LoadedAt: f.LoadedAt,
					Error: f.Error, ErrorAt: f.ErrorAt, Entries: f.Entries})
				if f.Error != "" {
					gs.FilesOK = false
				}
			}
		}
		reply.Guard = gs
	}
	reply.Config = b.d.configStatus()
	return reply, nil
}

func programStatus(s launcher.Status) control.ProgramStatus {
	ps := control.ProgramStatus{
		Name: s.Name, State: s.State, PID: s.PID, Restarts: s.Restarts,
		Health: s.Health, LastExit: s.LastExit, Message: s.Message,
	}
	if s.PID > 0 && !s.Started.IsZero() {
		ps.UptimeSeconds = int64(time.Since(s.Started).Seconds())
	}
	return ps
}

// act runs a supervisor action, waiting for it unless wait is false.
func (b *backend) act(ctx context.Context, action string, wait bool, names []string,
	fn func(context.Context, ...string) error) error {
	names, err := b.names(names)
	if err != nil {
		return err
	}
	b.d.adminRecord(action, strings.Join(names, ","), nil)
	if !wait {
		go func() {
			// Detached from the request: the CLI does not wait.
			if err := fn(context.Background(), names...); err != nil {
				b.d.logger.Error(action+" failed", "programs", names, "error", err)
			}
		}()
		return nil
	}
	return fn(ctx, names...)
}

func (b *backend) Start(ctx context.Context, wait bool, names ...string) error {
	return b.act(ctx, "start", wait, names, b.d.sup.Start)
}

func (b *backend) Stop(ctx context.Context, wait bool, names ...string) error {
	return b.act(ctx, "stop", wait, names, b.d.sup.Stop)
}

func (b *backend) Restart(ctx context.Context, wait bool, names ...string) error {
	return b.act(ctx, "restart", wait, names, b.d.sup.Restart)
}

func (b *backend) Tail(name string, n int) ([]string, error) {
	if _, err := b.names([]string{name}); err != nil {
		return nil, err
	}
	return b.d.sup.Tail(name, n)
}

func (b *backend) Follow(ctx context.Context, name string) (<-chan string, error) {
	if _, err := b.names([]string{name}); err != nil {
		return nil, err
	}
	return b.d.sup.Follow(ctx, name)
}

func (b *backend) Reload(ctx context.Context) error { return b.d.Reload(ctx) }

func (b *backend) AuditReopen() error { return b.d.AuditReopen() }
