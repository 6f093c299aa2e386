// Package daemon is `glmctl up`: it builds every long-lived part from the
// config (audit writer, control socket, metrics and guard listeners, the
// process supervisor), runs them under one errgroup, and turns signals into
// reloads, audit reopens and a graceful stop.
//
// Start order: audit → control socket → metrics → guard (503 while the model
// loads) → sd_notify READY → programs in dependency order. Stop order is the
// reverse: stop accepting, drain, stop programs, flush the audit trail.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/console"
	"github.com/glmctl/glmctl/internal/control"
	"github.com/glmctl/glmctl/internal/gpu"
	"github.com/glmctl/glmctl/pkg/audit"
	"github.com/glmctl/glmctl/pkg/guard"
	"github.com/glmctl/glmctl/pkg/launcher"
)

// Options are what `glmctl up` passes in.
type Options struct {
	// Reload re-reads the configuration (from the same file) for SIGHUP and
	// `glmctl reload`. Nil: reload re-parses nothing and only reloads the
	// guard's key and limit files.
	Reload func() (*config.Config, error)
	Logger hclog.Logger
	// Version is reported in glmctl_build_info.
	Version string
}

// Daemon is one running `glmctl up`.
type Daemon struct {
	opts     Options
	logger   hclog.Logger
	registry *prometheus.Registry

	mu  sync.Mutex // guards cfg and the reload bookkeeping below
	cfg *config.Config
	// loadedAt is when cfg was put in force; lastErr and lastErrAt the
	// first error of the last rejected reload (cleared by a success).
	loadedAt  time.Time
	lastErr   string
	lastErrAt time.Time
	// reloadMu serialises reloads (SIGHUP and `glmctl reload` may coincide).
	reloadMu sync.Mutex

	xidMu         sync.Mutex
	xidRestarting map[string]bool // programs being restarted after an XID
	xidRestarts   sync.WaitGroup

	audit   *audit.Writer
	reloads *guard.ReloadMetrics // glmctl_config_last_reload_*: the HCL file, keys, limits
	gpus    *gpu.Monitor         // nil: no GPU use in the config, or NVML unavailable
	gpuErr  error                // why gpus is nil when the config wants GPUs
	sup     *launcher.Supervisor
	guard   *guard.Guard
	control *control.Server
	metrics *metricsServer
	console *console.Server // nil: no console block
	notify  *notifier
}

// New builds the daemon's parts from cfg. Nothing listens or runs yet, except
// that the audit log is opened (so a bad audit path fails fast).
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	d := &Daemon{opts: opts, logger: opts.Logger, cfg: cfg, registry: prometheus.NewRegistry(), loadedAt: time.Now()}
	for _, w := range cfg.Warnings {
		d.logger.Warn("config: " + w.Error())
	}
	problems, warnings := Preflight(cfg)
	for _, w := range warnings {
		d.logger.Warn("config: " + w.Error())
	}
	if len(problems) > 0 {
		return nil, problems
	}
	registerBuildInfo(d.registry, opts.Version)
	reloads, err := guard.NewReloadMetrics(d.registry)
	if err != nil {
		return nil, err
	}
	d.reloads = reloads
	if cfg.Path != "" {
		d.reloads.Record(cfg.Path, true)
	}

	var hmacKey []byte
	if cfg.Audit != nil {
		if cfg.Audit.HMACKeyFile != "" {
			k, err := audit.ReadHMACKey(cfg.Audit.HMACKeyFile)
			if err != nil {
				return nil, fmt.Errorf("audit hmac_key_file: %w", err)
			}
			hmacKey = k
		}
		w, err := audit.Open(cfg.Audit, audit.Options{Logger: d.logger.Named("audit"), Registerer: d.registry, HMACKey: hmacKey})
		if err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		d.audit = w
	}

	lopts := launcher.Options{Logger: d.logger}
	if wantsGPUs(cfg) {
		d.gpus, d.gpuErr = gpu.Open(d.logger.Named("gpu"))
		if d.gpuErr != nil {
			if cfg.GPU != nil && cfg.GPU.Required {
				d.logger.Error(d.gpuErr.Error() + "; programs with gpus will not start (gpu.required = true)")
			} else {
				d.logger.Warn(d.gpuErr.Error() + "; going on without GPU checks")
			}
		} else {
			d.registry.MustRegister(gpu.NewCollector(d.gpus))
			// Before a GPU program starts again, wait for its previous
			// run's processes to leave the GPUs (vLLM's orphaned workers).
			lopts.AwaitRelease = gpu.ReleaseHook(d.gpus, cfg.GPU, d.logger.Named("gpu"))
		}
		lopts.PreStart = gpu.PreStartHook(d.gpus, d.gpuErr, cfg.GPU, d.logger.Named("gpu"))
	}
	sup, err := launcher.New(cfg.Programs, lopts)
	if err != nil {
		d.closeAudit()
		return nil, fmt.Errorf("programs: %w", err)
	}
	d.sup = sup
	if err := registerProgramMetrics(d.registry, sup); err != nil {
		d.closeAudit()
		return nil, err
	}

	if cfg.Guard != nil {
		// The guard must never starve the supervisor of descriptors: its
		// connections get what RLIMIT_NOFILE leaves after a reserve.
		nofile, err := raiseNOFILE()
		if err != nil {
			d.logger.Warn("could not raise the open-files limit", "limit", nofile, "error", err)
		}
		deps := guard.Deps{Logger: d.logger, Registerer: d.registry, Reloads: d.reloads,
			FDBudget: guardFDBudget(nofile), Policy: cfg.Policy}
		if d.audit != nil {
			deps.Audit = d.audit
		}
		deps.Ready = func(name string) bool { return name == "" || sup.Ready(name) }
		g, err := guard.New(cfg.Guard, deps)
		if err != nil {
			d.closeAudit()
			return nil, placed(cfg, err, "guard")
		}
		d.guard = g
	}
	if cfg.Metrics != nil {
		m, err := newMetricsServer(cfg.Metrics, d.registry, d.logger.Named("metrics"))
		if err != nil {
			d.closeAudit()
			return nil, err
		}
		d.metrics = m
	}
	if err := d.newConsole(hmacKey); err != nil {
		d.closeAudit()
		return nil, fmt.Errorf("console: %w", err)
	}
	d.control = control.NewServer(cfg.Control.Socket, &backend{d: d}, d.logger.Named("control"))
	d.notify = newNotifier(d.logger)
	return d, nil
}

// placed returns err placed at its setting when it is about one (see
// config.Place), else prefixed with what failed.
func placed(cfg *config.Config, err error, what string) error {
	var se *config.SettingError
	if errors.As(err, &se) {
		return cfg.Place(err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Registry is the daemon's own Prometheus registry.
func (d *Daemon) Registry() *prometheus.Registry { return d.registry }

func (d *Daemon) closeAudit() {
	if d.audit != nil {
		if err := d.audit.Close(); err != nil {
			d.logger.Error("close audit log", "error", err)
		}
	}
}

// config returns the current configuration.
func (d *Daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Run runs until ctx is cancelled or SIGTERM/SIGINT arrives, then stops
// everything gracefully and returns nil; a part that fails makes it return
// that part's error after stopping the rest.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer d.closeAudit()
	if d.gpus != nil {
		defer d.gpus.Close() // also when a listener fails to open
	}

	if err := d.control.Listen(); err != nil {
		return err
	}
	if d.metrics != nil {
		if err := d.metrics.Listen(); err != nil {
			return err
		}
	}
	// Every listener is bound before READY=1: systemd (and whatever waits
	// on it) may connect the moment it is sent.
	if d.guard != nil {
		if err := d.guard.Listen(); err != nil {
			return err
		}
	}
	if d.console != nil {
		if err := d.console.Listen(); err != nil {
			return fmt.Errorf("console listen: %w", err)
		}
	}

	// Programs run under their own context: on shutdown the listeners stop
	// (the guard drains) before the programs are stopped.
	progCtx, stopPrograms := context.WithCancel(context.Background())
	defer stopPrograms()
	supDone := make(chan error, 1)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.control.Run(gctx) })
	if d.metrics != nil {
		g.Go(func() error { return d.metrics.Run(gctx) })
	}
	if d.guard != nil {
		g.Go(func() error { return d.guard.Run(gctx) })
	}
	if d.console != nil {
		g.Go(func() error { return d.console.Run(gctx) })
	}
	g.Go(func() error { return d.handleSignals(gctx) })
	if d.gpus != nil {
		g.Go(func() error {
			if err := d.gpus.WatchXID(gctx, d.onXID(gctx)); err != nil {
				d.logger.Warn("XID events cannot be watched", "error", err)
			}
			return nil
		})
	}
	g.Go(func() error { d.notify.Run(gctx, d.statusLine); return nil })

	d.notify.Ready()
	cfg := d.config() // a SIGHUP may already be reloading it
	d.logger.Info("glmctl up", "control", cfg.Control.Socket, "programs", len(cfg.Programs))
	go func() { supDone <- d.sup.Run(progCtx) }()

	var supErr error
	select {
	case <-gctx.Done():
	case supErr = <-supDone:
		supDone = nil
	}
	d.notify.Stopping()
	d.logger.Info("stopping")
	err := g.Wait()
	stopPrograms()
	if supDone != nil {
		supErr = <-supDone
	}
	d.xidRestarts.Wait()
	if err == nil {
		err = supErr
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	d.logger.Info("stopped", "error", err)
	return err
}

// handleSignals turns SIGHUP into a reload and SIGUSR1 into a reopen of the
// audit log and the programs' log files (logrotate create + postrotate).
func (d *Daemon) handleSignals(ctx context.Context) error {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-ch:
			switch s {
			case syscall.SIGHUP:
				if err := d.Reload(ctx); err != nil {
					d.logger.Error("reload rejected; the previous configuration stays in force", "error", err)
				}
			case syscall.SIGUSR1:
				if d.audit != nil {
					if err := d.AuditReopen(); err != nil {
						d.logger.Error("audit reopen", "error", err)
					}
				}
				if err := d.sup.ReopenLogs(); err != nil {
					d.logger.Error("program logs reopen", "error", err)
				}
			}
		}
	}
}

// Reload re-reads the configuration, all of it or none: the whole file is
// decoded and checked, settings that only a restart applies are refused
// (naming each), the guard's new settings and files are read and checked,
// and only then is anything put in force: the guard's settings in one swap,
// then the programs (changed ones restart, removed ones stop, new ones
// start). A rejected reload changes nothing and its error is kept for
// `glmctl status`.
//
// Once the new config is accepted, the reload runs to completion even if ctx
// is cancelled (a CLI that gives up waiting): stopping changed programs and
// then not starting them again would leave them down with the old config.
func (d *Daemon) Reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	ctx = context.WithoutCancel(ctx)
	d.notify.Reloading()
	defer d.notify.Ready()
	err := d.reload(ctx)
	d.adminRecord("reload", "config", err)
	d.mu.Lock()
	if err != nil {
		d.lastErr, d.lastErrAt = firstError(err), time.Now()
	} else {
		d.lastErr, d.lastErrAt = "", time.Time{}
	}
	d.mu.Unlock()
	if err == nil {
		d.logger.Info("configuration reloaded")
	}
	return err
}

func (d *Daemon) reload(ctx context.Context) error {
	cfg := d.config()
	if d.opts.Reload == nil {
		if d.guard != nil {
			return d.guard.Reload()
		}
		return nil
	}
	reject := func(err error) error {
		if cfg.Path != "" {
			d.reloads.Record(cfg.Path, false)
		}
		return err
	}
	next, err := d.opts.Reload()
	if err != nil {
		return reject(err)
	}
	problems, warnings := reloadPreflight(cfg, next)
	if len(problems) > 0 {
		return reject(problems)
	}
	if changed := restartOnly(cfg, next); len(changed) > 0 {
		return reject(fmt.Errorf("%w: %s changed; restart glmctl to apply (nothing was reloaded)", guard.ErrRestartRequired, strings.Join(changed, ", ")))
	}
	var pending *guard.Pending
	if d.guard != nil {
		if pending, err = d.guard.Prepare(next.Guard, next.Policy); err != nil {
			return reject(next.Place(err))
		}
	}
	// Everything is checked: put it in force, saying what the next start
	// would refuse.
	for _, w := range warnings {
		d.logger.Warn("reloaded config: " + w.Error())
	}
	if cfg.Path != "" {
		d.reloads.Record(cfg.Path, true)
	}
	if pending != nil {
		pending.Commit()
	}
	if lvl := hclog.LevelFromString(next.Log.Level); lvl != hclog.NoLevel {
		d.logger.SetLevel(lvl)
	}
	d.mu.Lock()
	d.cfg, d.loadedAt = next, time.Now()
	d.mu.Unlock()
	if err := d.sup.Update(ctx, next.Programs); err != nil {
		return fmt.Errorf("programs: %w", err)
	}
	return nil
}

// configStatus reports the configuration in force.
func (d *Daemon) configStatus() *control.ConfigStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &control.ConfigStatus{Path: d.cfg.Path, SHA256: d.cfg.SHA256, LoadedAt: d.loadedAt,
		LastReloadError: d.lastErr, LastReloadErrorAt: d.lastErrAt}
}

// firstError is the first line of an error (a config error lists every
// problem, one per line).
func firstError(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		return msg[:i]
	}
	return msg
}

// AuditReopen reopens the audit log file.
func (d *Daemon) AuditReopen() error {
	if d.audit == nil {
		return errors.New("no audit block in the config")
	}
	return d.audit.Reopen()
}

// adminRecord writes an admin audit record; failures are logged, not fatal.
func (d *Daemon) adminRecord(action, target string, actErr error) {
	if d.audit == nil {
		return
	}
	r := &audit.Record{Stage: audit.StageAdmin, Action: action, Target: target}
	if actErr != nil {
		r.Error = actErr.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.audit.Write(ctx, r); err != nil {
		d.logger.Error("audit admin record", "action", action, "error", err)
	}
}

// restartOnly names the settings outside the guard block that a running
// daemon cannot change (the guard's own are checked by guard.Prepare).
func restartOnly(old, next *config.Config) []string {
	var out []string
	add := func(changed bool, name string) {
		if changed {
			out = append(out, name)
		}
	}
	add(old.Log.Format != next.Log.Format, "log.format")
	add(old.Control != next.Control, "control.socket")
	add((old.Metrics == nil) != (next.Metrics == nil) || (old.Metrics != nil && *old.Metrics != *next.Metrics), "metrics")
	add((old.Console == nil) != (next.Console == nil) || (old.Console != nil && *old.Console != *next.Console), "console")
	add((old.Audit == nil) != (next.Audit == nil) || (old.Audit != nil && *old.Audit != *next.Audit), "audit")
	add((old.GPU == nil) != (next.GPU == nil) || (old.GPU != nil && *old.GPU != *next.GPU), "gpu")
	add((old.Guard == nil) != (next.Guard == nil), "guard (added or removed)")
	return out
}

// wantsGPUs is true when the config has a gpu block or a program with gpus.
func wantsGPUs(cfg *config.Config) bool {
	if cfg.GPU != nil {
		return true
	}
	for _, p := range cfg.Programs {
		if len(p.GPUs) > 0 {
			return true
		}
	}
	return false
}
