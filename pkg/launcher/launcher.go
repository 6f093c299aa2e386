package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/glmctl/glmctl/internal/config"
)

// Errors returned by the Supervisor.
var (
	// ErrUnknownProgram is returned for a name that is not configured.
	ErrUnknownProgram = errors.New("unknown program")
	// ErrClosed is returned once Run has returned.
	ErrClosed = errors.New("supervisor stopped")
)

// Options configure a Supervisor.
type Options struct {
	// Logger receives the supervisor's own log; each program's output goes to
	// Logger.Named(program). Nil discards everything.
	Logger hclog.Logger
	// PreStart, when set, runs before every start of a program (GPU
	// preflight). The env it returns is added to the program's environment;
	// an error is a failed start, shown in the program's status message.
	PreStart func(ctx context.Context, p *config.Program) (env []string, err error)
	// OnEvent, when set, is called at every state transition, from the
	// program's own goroutine: it must not block.
	OnEvent func(Event)
	// AwaitRelease, when set, runs before each start of a program with gpus
	// that ran before, ahead of PreStart, with the host PIDs of the previous
	// run's whole process tree (sampled while it ran and when it was asked
	// to stop). It waits until they hold no GPU memory; an error is a failed
	// start, shown in the program's status message.
	AwaitRelease func(ctx context.Context, p *config.Program, pids []int) error
	// Clock runs the supervisor's timers and probe schedule (see Clock);
	// nil is the wall clock. Tests pass a clock they advance themselves.
	Clock Clock
}

// Event is one state transition of a program.
type Event struct {
	Program  string
	From, To string // states
	Time     time.Time
	PID      int
	LastExit *int
	Message  string
}

// Status is the state of one program.
type Status struct {
	Name     string
	State    string    // STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL
	PID      int       // the program's main process; 0 when not running
	Started  time.Time // when the current run began; zero when none
	Restarts int       // automatic restarts (crashes, failed health checks)
	Health   string    // healthy | unhealthy | unknown | none
	// LastExit is the last exit code (128+N after a death by signal N), or nil.
	LastExit *int
	// LastSignal names the signal of the last death by signal ("SIGKILL"), or "".
	LastSignal string
	Message    string // why it is in this state: "loading 2m31s", an error…
}

// Supervisor runs a set of programs.
type Supervisor struct {
	opts  Options
	log   hclog.Logger
	exe   string
	clock Clock

	mu    sync.Mutex
	progs map[string]*program
	order []string // config order

	// updateMu serialises Update: two reloads at once (SIGHUP and `glmctl
	// reload`) would otherwise both add a new program and run it twice.
	updateMu sync.Mutex

	running chan struct{} // closed when Run starts
	closed  chan struct{} // closed when Run is shutting down
	runCtx  context.Context
	loops   sync.WaitGroup
	bg      sync.WaitGroup // autostart waiters

	noPIDNS atomic.Bool
	// outputGrace bounds the wait for a program's pipes after its keeper exited.
	outputGrace time.Duration
	// treeSample is how often the process tree of a program with gpus is
	// sampled for AwaitRelease.
	treeSample time.Duration

	// Test seams, nil in production. spawnFault, when it returns an error,
	// fails a keeper start with it before any pipe is made (as pipe2 or
	// fork would); probeDial replaces the dialer of HTTP and TCP probes.
	spawnFault func(program string) error
	probeDial  dialFunc
}

// New validates programs and returns a Supervisor for them; nothing runs
// before Run.
func New(programs []*config.Program, opts Options) (*Supervisor, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	progs, err := normalize(programs)
	if err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	s := &Supervisor{
		opts:        opts,
		log:         opts.Logger,
		exe:         exe,
		clock:       opts.Clock,
		progs:       map[string]*program{},
		running:     make(chan struct{}),
		closed:      make(chan struct{}),
		outputGrace: 2 * time.Second,
		treeSample:  2 * time.Second,
	}
	for _, cfg := range progs {
		s.progs[cfg.Name] = newProgram(s, cfg)
		s.order = append(s.order, cfg.Name)
	}
	return s, nil
}

// Run starts the autostart programs in dependency order and supervises
// them. When ctx is cancelled it stops every program, dependents first, and
// returns nil once all of them are reaped.
func (s *Supervisor) Run(ctx context.Context) error {
	select {
	case <-s.running:
		return errors.New("launcher: Run called twice")
	default:
	}
	s.mu.Lock()
	s.runCtx = ctx
	var auto []string
	for _, name := range s.order {
		p := s.progs[name]
		s.loops.Add(1)
		go func() { defer s.loops.Done(); p.loop() }()
		if p.cfg.Autostart {
			auto = append(auto, name)
		}
	}
	close(s.running)
	s.mu.Unlock()

	s.autostart(auto)
	<-ctx.Done()

	s.mu.Lock()
	close(s.closed)
	names := slices.Clone(s.order)
	s.mu.Unlock()
	s.bg.Wait()
	s.log.Info("stopping all programs")
	if err := s.stopGraph(context.Background(), names, true); err != nil {
		s.log.Error("stopping programs", "error", err)
	}
	s.loops.Wait()
	return nil
}

// autostart starts names in the background, each once its dependencies are
// RUNNING, waiting for them as long as it takes.
func (s *Supervisor) autostart(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return // shutting down
	default:
	}
	if len(names) == 0 {
		return
	}
	// Mark the programs as about to start before this returns, so that an
	// Update deciding what to restart counts them as active.
	var marked []*program
	for _, n := range names {
		if p := s.progs[n]; p != nil {
			p.pendingStarts.Add(1)
			marked = append(marked, p)
		}
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer func() {
			for _, p := range marked {
				p.pendingStarts.Add(-1)
			}
		}()
		if err := s.startGraph(s.runCtx, names, true); err != nil && s.runCtx.Err() == nil {
			s.log.Error("autostart", "error", err)
		}
	}()
}

// ready waits for Run to have started.
func (s *Supervisor) ready(ctx context.Context) error {
	select {
	case <-s.running:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-s.closed:
		return ErrClosed
	default:
		return nil
	}
}

// Start starts the named programs (all when none is named) and their
// dependencies, and waits until they are RUNNING, have failed, or ctx is
// done. Starting a FATAL program tries again.
func (s *Supervisor) Start(ctx context.Context, names ...string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	names, err := s.resolve(names)
	if err != nil {
		return err
	}
	return s.startGraph(ctx, names, false)
}

// Stop stops the named programs (all when none is named), dependents before
// their dependencies, and waits until they are stopped.
func (s *Supervisor) Stop(ctx context.Context, names ...string) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	names, err := s.resolve(names)
	if err != nil {
		return err
	}
	return s.stopGraph(ctx, names, false)
}

// Restart stops, then starts the named programs (all when none is named).
func (s *Supervisor) Restart(ctx context.Context, names ...string) error {
	if err := s.Stop(ctx, names...); err != nil {
		return err
	}
	return s.Start(ctx, names...)
}

// Status reports the named programs (all, in config order, when none is named).
func (s *Supervisor) Status(names ...string) ([]Status, error) {
	names, err := s.resolve(names)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(names))
	for _, n := range names {
		st, _, _ := s.program(n).watch()
		out = append(out, st)
	}
	return out, nil
}

// Ready reports whether the program is RUNNING and not failing its health
// checks (the guard answers 503 otherwise).
func (s *Supervisor) Ready(name string) bool {
	p := s.program(name)
	if p == nil {
		return false
	}
	st, _, _ := p.watch()
	return st.State == StateRunning && (st.Health == HealthHealthy || st.Health == HealthNone)
}

// Tail returns up to the last n captured lines of the program (all kept
// lines when n ≤ 0), oldest first.
func (s *Supervisor) Tail(name string, n int) ([]string, error) {
	p := s.program(name)
	if p == nil {
		return nil, fmt.Errorf("%q: %w", name, ErrUnknownProgram)
	}
	return p.out.tail(n), nil
}

// Follow streams the program's new output lines until ctx is done, then
// closes the channel. A reader that falls more than 1024 lines behind loses
// lines rather than slowing the program down.
func (s *Supervisor) Follow(ctx context.Context, name string) (<-chan string, error) {
	p := s.program(name)
	if p == nil {
		return nil, fmt.Errorf("%q: %w", name, ErrUnknownProgram)
	}
	in, unfollow := p.out.follow()
	out := make(chan string)
	go func() {
		defer close(out)
		defer unfollow()
		for {
			select {
			case <-ctx.Done():
				return
			case l := <-in:
				select {
				case out <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// ReopenLogs reopens every program's log file, for an external logrotate
// with "create" (SIGHUP or a control command can call it).
func (s *Supervisor) ReopenLogs() error {
	s.mu.Lock()
	progs := make([]*program, 0, len(s.progs))
	for _, p := range s.progs {
		progs = append(progs, p)
	}
	s.mu.Unlock()
	var errs []error
	for _, p := range progs {
		if err := p.out.reopen(); err != nil {
			errs = append(errs, fmt.Errorf("reopen %q log: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}

// Update applies a new set of programs (a reload): removed programs are
// stopped, changed ones are stopped and, if they were active, started again
// with the new config, added ones start if autostart; unchanged ones are not
// touched. It returns once the stops are done and the starts are under way
// (it does not wait for readiness).
func (s *Supervisor) Update(ctx context.Context, programs []*config.Program) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	next, err := normalize(programs)
	if err != nil {
		return err
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	s.mu.Lock()
	var removed, changed, added []string
	newCfg := map[string]*config.Program{}
	for _, c := range next {
		newCfg[c.Name] = c
		old, ok := s.progs[c.Name]
		switch {
		case !ok:
			added = append(added, c.Name)
		case !reflect.DeepEqual(old.currentConfig(), c):
			changed = append(changed, c.Name)
		}
	}
	for _, n := range s.order {
		if newCfg[n] == nil {
			removed = append(removed, n)
		}
	}
	s.mu.Unlock()
	s.log.Info("applying new program set", "added", added, "changed", changed, "removed", removed)

	// The new config first, so that a start racing with this update (an
	// autostart still under way) already uses it; then stop the changed
	// programs and start again those that were active or about to start.
	var restart []string
	for _, n := range changed {
		p := s.program(n)
		_, _ = p.do(command{kind: cmdConfig, cfg: newCfg[n]})
		switch p.state() {
		case StateStarting, StateRunning, StateBackoff:
			restart = append(restart, n)
		default:
			if p.pendingStarts.Load() > 0 {
				restart = append(restart, n)
			}
		}
	}
	if err := s.stopGraph(ctx, append(slices.Clone(removed), changed...), false); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	for _, n := range removed {
		p := s.program(n)
		_, _ = p.do(command{kind: cmdQuit})
		<-p.done
	}

	s.mu.Lock()
	for _, n := range removed {
		delete(s.progs, n)
	}
	select {
	case <-s.closed:
		// Run is shutting down and stops only the programs it knew.
		s.mu.Unlock()
		return ErrClosed
	default:
	}
	for _, n := range added {
		p := newProgram(s, newCfg[n])
		s.progs[n] = p
		s.loops.Add(1)
		go func() { defer s.loops.Done(); p.loop() }()
	}
	order := make([]string, 0, len(next))
	for _, c := range next {
		order = append(order, c.Name)
	}
	s.order = order
	s.mu.Unlock()

	for _, n := range added {
		if newCfg[n].Autostart {
			restart = append(restart, n)
		}
	}
	s.autostart(restart)
	return nil
}

// currentConfig is the config the program runs with (any goroutine).
func (p *program) currentConfig() *config.Program {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conf
}

// program returns the named program or nil.
func (s *Supervisor) program(name string) *program {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.progs[name]
}

// resolve checks names; none (or "all", unless a program has that name)
// means all, in config order.
func (s *Supervisor) resolve(names []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(names) == 0 || (slices.Contains(names, "all") && s.progs["all"] == nil) {
		return slices.Clone(s.order), nil
	}
	var errs []error
	for _, n := range names {
		if s.progs[n] == nil {
			errs = append(errs, fmt.Errorf("%q: %w", n, ErrUnknownProgram))
		}
	}
	return names, errors.Join(errs...)
}

// stableRun is how long a program must stay RUNNING to reset its backoff.
func stableRun(cfg *config.Program) time.Duration {
	return max(minStableRun, cfg.Backoff.Max)
}

// parseSignal reads "SIGTERM", "TERM" or "15"; SIGTERM when unknown.
func parseSignal(name string) syscall.Signal {
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n)
	}
	name = strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig
	}
	return syscall.SIGTERM
}
