package launcher

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/glmctl/glmctl/internal/config"
)

// Program states, with supervisord's names.
const (
	StateStopped  = "STOPPED"
	StateStarting = "STARTING"
	StateRunning  = "RUNNING"
	StateBackoff  = "BACKOFF"
	StateStopping = "STOPPING"
	StateExited   = "EXITED"
	StateFatal    = "FATAL"
)

// Health column values.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	HealthUnknown   = "unknown"
	HealthNone      = "none" // no probe configured
)

const (
	// warmSpareBelow: a program whose backoff.initial is shorter keeps a
	// spare keeper forked in advance, so a crash is followed by a restart
	// within milliseconds.
	warmSpareBelow = 50 * time.Millisecond
	// retryWindow is the window in which start_retries failed starts make a program FATAL.
	retryWindow = 60 * time.Second
	// minStableRun is the shortest RUNNING stretch that resets the backoff.
	minStableRun = 60 * time.Second
)

type eventKind int

const (
	evStarted      eventKind = iota + 1 // the keeper exec'd the program
	evExited                            // the instance is over and its output drained
	evProbe                             // one health probe result
	evStartSecs                         // alive for start_secs (no probe)
	evStartTimeout                      // not ready within start_timeout
	evStopTimeout                       // stop_timeout elapsed: SIGKILL
	evBackoff                           // the backoff delay elapsed
)

// event is reported to a program's loop by its instance, probes and timers.
type event struct {
	kind  eventKind
	in    *instance
	exit  exitInfo
	probe probeResult
	seq   int // evBackoff: which backoff timer
}

type cmdKind int

const (
	cmdStart cmdKind = iota + 1
	cmdStop
	cmdConfig // use cfg for the next start
	cmdQuit   // stop and end the loop
)

type command struct {
	kind cmdKind
	cfg  *config.Program
	// reply gets the value of runs (cmdStart) or 0 once the command is applied.
	reply chan int
}

// program is one supervised program: a loop goroutine owns the fields
// marked "loop"; the snapshot under mu is what readers see.
type program struct {
	name   string
	sup    *Supervisor
	log    hclog.Logger
	out    *output
	cmds   chan command
	events chan event
	done   chan struct{} // closed when the loop returns

	// loop
	cfg         *config.Program
	cur         *instance
	spare       *instance   // a keeper forked ahead of need, waiting for its go-ahead
	retired     []*instance // ended runs and discarded spares, perhaps still exiting
	want        bool        // should be running
	startAfter  bool        // start again once the current stop completes
	quitting    bool
	failedAt    []time.Time // failed starts inside retryWindow
	consecutive int         // crashes since the last stable run, for backoff
	probeFails  int
	backoffSeq  int
	backoff     Timer
	// spawnStarved and probeStarved: the last spawn, the last probe failed
	// for want of descriptors, memory or processes (logged once per change).
	spawnStarved bool
	probeStarved bool
	lastPIDs     []int // the previous run's process tree (gpu programs), for AwaitRelease

	// pendingStarts counts autostarts under way that have not yet started
	// the program (they may be waiting for its dependencies).
	pendingStarts atomic.Int32

	mu      sync.Mutex
	conf    *config.Program // = cfg, for readers
	snap    Status
	runs    int           // times it became RUNNING
	spawns  int           // runs begun (instances spawned)
	changed chan struct{} // closed and replaced at each change
}

func newProgram(s *Supervisor, cfg *config.Program) *program {
	p := &program{
		name:    cfg.Name,
		sup:     s,
		log:     s.log.Named(cfg.Name),
		cmds:    make(chan command),
		events:  make(chan event, 64),
		done:    make(chan struct{}),
		cfg:     cfg,
		conf:    cfg,
		changed: make(chan struct{}),
	}
	p.out = newOutput(p.log)
	if err := p.out.setFile(cfg.Log); err != nil {
		p.log.Error("cannot open program log", "error", err)
	}
	p.snap = Status{Name: cfg.Name, State: StateStopped, Health: healthIdle(cfg)}
	return p
}

func healthIdle(cfg *config.Program) string {
	if cfg.Health == nil {
		return HealthNone
	}
	return HealthUnknown
}

// send delivers an event to the loop unless the loop is gone.
func (p *program) send(e event) {
	select {
	case p.events <- e:
	case <-p.done:
	}
}

// do sends a command and waits for it to be applied.
func (p *program) do(c command) (int, error) {
	c.reply = make(chan int, 1)
	select {
	case p.cmds <- c:
	case <-p.done:
		return 0, fmt.Errorf("program %q: %w", p.name, ErrClosed)
	}
	return <-c.reply, nil
}

// loop is the program's state machine.
func (p *program) loop() {
	defer close(p.done)
	defer p.out.close()
	for {
		select {
		case c := <-p.cmds:
			p.command(c)
		case e := <-p.events:
			p.event(e)
		}
		if !p.want {
			p.dropSpare() // spares serve restarts only
		}
		if p.quitting && p.cur == nil {
			p.stopBackoff()
			for _, in := range p.retired {
				for waiting := true; waiting; {
					select {
					case <-in.done:
						waiting = false
					case <-p.events: // stale now; keeps the sender from blocking
					}
				}
			}
			return
		}
	}
}

func (p *program) command(c command) {
	switch c.kind {
	case cmdStart:
		switch {
		case p.cur != nil && p.state() == StateStopping:
			// Start again once the stop completes. want stays as it is until
			// then, so that the end of this run is not taken for a crash (a
			// stop with want set, after failed health checks, restarts anyway).
			p.startAfter = !p.want
		case p.cur != nil:
			p.want = true // already starting or running
		default:
			p.want = true
			p.stopBackoff()
			p.failedAt = nil
			p.spawn(false)
		}
		c.reply <- p.runsNow()
		return
	case cmdStop, cmdQuit:
		p.want, p.startAfter = false, false
		p.quitting = p.quitting || c.kind == cmdQuit
		p.stopBackoff()
		p.dropSpare()
		switch {
		case p.cur != nil:
			p.stopInstance()
		case p.state() == StateBackoff, p.state() == StateStarting:
			p.set(StateStopped, func(s *Status) { s.Message = "" })
		}
		// The waiter's stop is also done once a later start spawned a new
		// run (which happens only after this one ended).
		p.mu.Lock()
		c.reply <- p.spawns
		p.mu.Unlock()
		return
	case cmdConfig:
		p.dropSpare()
		p.cfg = c.cfg
		p.mu.Lock()
		p.conf = c.cfg
		p.mu.Unlock()
		if err := p.out.setFile(c.cfg.Log); err != nil {
			p.log.Error("cannot open program log", "error", err)
		}
		if p.cur == nil {
			p.set(p.state(), func(s *Status) { s.Health = healthIdle(c.cfg) })
		}
	}
	c.reply <- 0
}

// spawn starts a new run of the program, on the warm spare keeper when
// there is one.
func (p *program) spawn(auto bool) {
	in := p.takeSpare()
	if in == nil {
		in = newInstance(p, p.cfg)
		go in.run()
	}
	in.started = p.sup.clock.Now()
	in.prevPIDs = p.lastPIDs // read by the instance after goAhead
	p.mu.Lock()
	p.spawns++
	p.mu.Unlock()
	close(in.goAhead)
	p.cur = in
	p.probeFails = 0
	p.set(StateStarting, func(s *Status) {
		s.PID = 0
		s.Started = in.started
		s.Health = healthIdle(in.cfg)
		s.Message = ""
		if auto {
			s.Restarts++
		}
	})
	if in.cfg.Health != nil && in.cfg.StartTimeout > 0 {
		in.startTimer = p.after(in, in.cfg.StartTimeout, evStartTimeout)
	}
	if in.cfg.Backoff.Initial < warmSpareBelow {
		// Restarts are meant to be immediate: fork the next keeper now, so
		// that a crash does not wait for a process to start up.
		p.spare = newInstance(p, p.cfg)
		go p.spare.run()
	}
}

// takeSpare returns the warm spare keeper if it is still usable.
func (p *program) takeSpare() *instance {
	in := p.spare
	p.spare = nil
	if in == nil {
		return nil
	}
	select {
	case <-in.done:
		return nil
	default:
	}
	if in.cfg != p.cfg {
		p.retire(in)
		return nil
	}
	return in
}

// dropSpare discards the warm spare keeper, if any.
func (p *program) dropSpare() {
	if in := p.spare; in != nil {
		p.spare = nil
		p.retire(in)
	}
}

// retire cancels an unused keeper; the loop waits for it before it ends.
func (p *program) retire(in *instance) {
	in.cancel()
	p.track(in)
}

// track remembers an instance whose keeper may still be exiting; the loop
// waits for them all before it ends.
func (p *program) track(in *instance) {
	kept := p.retired[:0]
	for _, r := range p.retired {
		select {
		case <-r.done:
		default:
			kept = append(kept, r)
		}
	}
	p.retired = append(kept, in)
}

// stopInstance asks the current instance to stop: stop_signal to the whole
// program, then SIGKILL after stop_timeout. Before the program was spawned,
// this cancels the spawn.
func (p *program) stopInstance() {
	in := p.cur
	if p.state() != StateStopping {
		p.set(StateStopping, nil)
	}
	if in.stopping {
		return
	}
	in.stopping = true
	if in.tracksTree() {
		in.sampleTree() // the tree as it is when asked to stop, workers included
	}
	in.signal(stopSignal(in.cfg))
	in.stopTimer = p.after(in, in.cfg.StopTimeout, evStopTimeout)
}

// after reports an event of kind about in to the loop once d has passed on
// the supervisor's clock.
func (p *program) after(in *instance, d time.Duration, kind eventKind) Timer {
	return p.sup.clock.AfterFunc(d, func() { p.send(event{kind: kind, in: in}) })
}

func (p *program) event(e event) {
	if e.kind == evBackoff {
		if e.seq == p.backoffSeq && p.backoff != nil && p.cur == nil && p.want {
			p.backoff = nil
			p.spawn(true)
		}
		return
	}
	in := e.in
	if in != p.cur {
		return // a stale event from an earlier run
	}
	switch e.kind {
	case evStarted:
		if p.spawnStarved {
			p.spawnStarved = false
			p.log.Info("spawning works again")
		}
		p.set(p.state(), func(s *Status) { s.PID = int(in.pid.Load()) })
		if p.state() != StateStarting {
			return
		}
		if h := in.cfg.Health; h != nil {
			go in.probeLoop(h)
			return
		}
		if in.cfg.StartSecs <= 0 {
			p.becomeRunning(in)
			return
		}
		in.startTimer = p.after(in, in.cfg.StartSecs, evStartSecs)
	case evStartSecs:
		if p.state() == StateStarting {
			p.becomeRunning(in)
		}
	case evProbe:
		p.onProbe(in, e.probe)
	case evStartTimeout:
		p.onStartTimeout(in)
	case evStopTimeout:
		p.log.Warn("stop timeout elapsed; killing", "stop_timeout", in.cfg.StopTimeout)
		in.kill()
	case evExited:
		p.onExit(in, e.exit)
	}
}

func (p *program) becomeRunning(in *instance) {
	if in.startTimer != nil {
		in.startTimer.Stop()
	}
	in.ready.Store(true)
	in.readyAt = p.sup.clock.Now()
	p.failedAt = nil
	p.set(StateRunning, func(s *Status) {
		s.Message = ""
		if in.cfg.Health != nil {
			s.Health = HealthHealthy
		}
	})
}

func (p *program) onProbe(in *instance, r probeResult) {
	state := p.state()
	if state != StateStarting && state != StateRunning {
		return
	}
	if p.probeCouldNotRun(r) {
		msg := fmt.Sprintf("health probe could not run (%v); not counted as a failure", r.err)
		if in.startExpired {
			msg = fmt.Sprintf("not ready after %s, and the health probe could not run (%v); waiting for one that can", in.cfg.StartTimeout, r.err)
		}
		p.set(state, func(s *Status) { s.Message = msg })
		return
	}
	switch state {
	case StateStarting:
		if r.ok {
			p.becomeRunning(in)
			return
		}
		if in.startExpired {
			p.failStart(in) // start_timeout passed while no probe could run
			return
		}
		elapsed := p.sup.clock.Now().Sub(in.started).Truncate(time.Second)
		msg := fmt.Sprintf("loading %s", elapsed)
		if !r.refused {
			msg = fmt.Sprintf("starting %s: health: %v", elapsed, r.err)
		}
		p.set(StateStarting, func(s *Status) { s.Message = msg })
	case StateRunning:
		if r.ok {
			if p.probeFails > 0 {
				p.log.Info("health check passes again")
			}
			p.probeFails = 0
			p.set(StateRunning, func(s *Status) { s.Health, s.Message = HealthHealthy, "" })
			return
		}
		p.probeFails++
		limit := max(in.cfg.Health.Failures, 1)
		msg := fmt.Sprintf("health check failed %d/%d: %v", p.probeFails, limit, r.err)
		p.log.Warn("health check failed", "failures", p.probeFails, "limit", limit, "error", r.err)
		if p.probeFails < limit {
			p.set(StateRunning, func(s *Status) { s.Health, s.Message = HealthUnhealthy, msg })
			return
		}
		in.unhealthy = true
		p.set(StateStopping, func(s *Status) {
			s.Health, s.Message = HealthUnhealthy, msg+"; restarting"
		})
		p.stopInstance()
	}
}

// probeCouldNotRun reports whether r failed for want of descriptors, memory
// or processes in glmctl (not a failure of the program), and logs when
// probes stop and start running again, once per change.
func (p *program) probeCouldNotRun(r probeResult) bool {
	switch {
	case r.starved && !p.probeStarved:
		p.probeStarved = true
		p.log.Warn("health probe cannot run: glmctl is short of descriptors, memory or processes; not counted as a failure, retrying every interval", "error", r.err)
	case !r.starved && p.probeStarved:
		p.probeStarved = false
		p.log.Info("health probes run again")
	}
	return r.starved
}

// onStartTimeout stops a program that is not ready after start_timeout, a
// failed start; while its probes cannot run, it waits for one that can.
func (p *program) onStartTimeout(in *instance) {
	if p.state() != StateStarting {
		return
	}
	if p.probeStarved {
		in.startExpired = true
		p.set(StateStarting, func(s *Status) {
			s.Message = fmt.Sprintf("not ready after %s, and the health probe cannot run; waiting for one that can", in.cfg.StartTimeout)
		})
		return
	}
	p.failStart(in)
}

// failStart stops a program that did not become ready in time.
func (p *program) failStart(in *instance) {
	in.failedStart = true
	p.set(StateStarting, func(s *Status) {
		s.Message = fmt.Sprintf("not ready after %s; stopping", in.cfg.StartTimeout)
	})
	p.stopInstance()
}

// onExit decides what follows the end of a run.
func (p *program) onExit(in *instance, info exitInfo) {
	p.cur = nil
	p.track(in) // its keeper may take a moment more to be reaped
	if pids := in.treePIDs(); pids != nil {
		p.lastPIDs = pids
	}
	for _, t := range []Timer{in.startTimer, in.stopTimer} {
		if t != nil {
			t.Stop()
		}
	}
	wasRunning := in.ready.Load()
	p.log.Debug("program ended", "how", info.String(), "was_running", wasRunning)
	record := func(s *Status) {
		s.PID = 0
		s.Started = time.Time{}
		if le := info.lastExit(); le != nil {
			s.LastExit = le
			s.LastSignal = ""
			if info.signal != 0 {
				s.LastSignal = unix.SignalName(info.signal)
			}
		}
		s.Health = healthIdle(in.cfg)
	}
	cfg := p.cfg // a reload may have changed it meanwhile
	switch {
	case !p.want && p.startAfter && !p.quitting:
		// Start was asked for while stopping: go straight to STARTING so
		// that a waiter never sees a transient STOPPED.
		p.want, p.startAfter = true, false
		p.failedAt = nil
		p.set(StateStopping, record)
		p.spawn(false)
		return
	case !p.want:
		p.set(StateStopped, func(s *Status) { record(s); s.Message = "" })
		return
	case starved(info.err):
		p.retryStarved(cfg, record, info.err)
		return
	case info.fatal:
		p.log.Error("cannot start program", "error", info.err)
		p.want = false
		p.set(StateFatal, func(s *Status) { record(s); s.Message = info.String() })
		return
	case in.unhealthy:
		p.scheduleRestart(cfg, record, "restarted after failed health checks")
		return
	case wasRunning:
		if !in.readyAt.IsZero() && p.sup.clock.Now().Sub(in.readyAt) >= stableRun(cfg) {
			p.consecutive = 0
		}
		if cfg.Restart == config.RestartNever || (cfg.Restart == config.RestartOnFailure && info.success()) {
			p.want = false
			p.set(StateExited, func(s *Status) { record(s); s.Message = info.String() })
			return
		}
		p.log.Warn("program exited unexpectedly", "how", info.String())
		p.scheduleRestart(cfg, record, info.String())
		return
	}
	// It ended before it was ready: a failed start.
	if !in.failedStart && info.err == nil &&
		(cfg.Restart == config.RestartNever || (cfg.Restart == config.RestartOnFailure && info.success())) {
		p.want = false
		p.set(StateExited, func(s *Status) { record(s); s.Message = info.String() })
		return
	}
	now := p.sup.clock.Now()
	kept := p.failedAt[:0]
	for _, t := range p.failedAt {
		if now.Sub(t) < retryWindow {
			kept = append(kept, t)
		}
	}
	p.failedAt = append(kept, now)
	if len(p.failedAt) >= max(cfg.StartRetries, 1) {
		msg := fmt.Sprintf("%d failed starts within %s; last: %s", len(p.failedAt), retryWindow, info)
		p.log.Error("giving up on program", "reason", msg)
		p.want = false
		p.set(StateFatal, func(s *Status) { record(s); s.Message = msg })
		return
	}
	p.scheduleRestart(cfg, record, "failed start: "+info.String())
}

// scheduleRestart restarts at once with zero backoff, else after the backoff
// delay in BACKOFF.
func (p *program) scheduleRestart(cfg *config.Program, record func(*Status), why string) {
	d := p.nextBackoff(cfg, 0)
	p.restartAfter(d, record, fmt.Sprintf("%s; restarting in %s", why, d.Round(time.Millisecond)))
}

// retryStarved tries again after a spawn that failed for want of
// descriptors, memory or processes: BACKOFF with the usual delay (at least
// starvedRetryMin), but no failed start, so never FATAL for it.
func (p *program) retryStarved(cfg *config.Program, record func(*Status), err error) {
	if !p.spawnStarved {
		p.spawnStarved = true
		p.log.Warn("cannot spawn: glmctl is short of descriptors, memory or processes; retrying with backoff until it recovers", "error", err)
	} else {
		p.log.Debug("spawn failed again", "error", err)
	}
	d := p.nextBackoff(cfg, starvedRetryMin)
	p.restartAfter(d, record, fmt.Sprintf("spawn failed: %v; retrying in %s", err, d.Round(time.Millisecond)))
}

// nextBackoff counts one more consecutive restart and returns its delay,
// at least floor.
func (p *program) nextBackoff(cfg *config.Program, floor time.Duration) time.Duration {
	p.consecutive++
	return max(backoffDelay(cfg.Backoff, p.consecutive, rand.Float64()), floor)
}

// restartAfter spawns again at once when d ≤ 0, else in BACKOFF after d,
// showing msg.
func (p *program) restartAfter(d time.Duration, record func(*Status), msg string) {
	if d <= 0 {
		p.set(StateStarting, record) // keep the last exit visible
		p.spawn(true)
		return
	}
	p.backoffSeq++
	seq := p.backoffSeq
	p.backoff = p.sup.clock.AfterFunc(d, func() { p.send(event{kind: evBackoff, seq: seq}) })
	p.set(StateBackoff, func(s *Status) {
		record(s)
		s.Message = msg
	})
}

func (p *program) stopBackoff() {
	if p.backoff != nil {
		p.backoff.Stop()
		p.backoff = nil
	}
	p.backoffSeq++
}

// backoffDelay is the delay before the n-th consecutive restart (n ≥ 1):
// initial·2^(n-1), capped at max, minus up to 25% of jitter (j in [0,1)).
func backoffDelay(b config.Backoff, n int, j float64) time.Duration {
	if b.Initial <= 0 || n < 1 {
		return 0
	}
	d := b.Initial
	for i := 1; i < n && (b.Max <= 0 || d < b.Max); i++ {
		d *= 2
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	return d - time.Duration(float64(d)*0.25*j)
}

// stopSignal parses the program's stop_signal ("SIGTERM", "TERM" or a number).
func stopSignal(cfg *config.Program) syscall.Signal {
	return parseSignal(cfg.StopSignal)
}

// state reads the current state (any goroutine).
func (p *program) state() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap.State
}

func (p *program) runsNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// set changes the snapshot, wakes waiters and reports a state transition.
func (p *program) set(state string, f func(*Status)) {
	p.mu.Lock()
	now := p.sup.clock.Now() // before waiters wake: Times follow cause and effect
	from := p.snap.State
	p.snap.State = state
	if f != nil {
		f(&p.snap)
	}
	if state == StateRunning && from != StateRunning {
		p.runs++
	}
	snap := p.snap
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	if from != state {
		p.log.Debug("state", "from", from, "to", state, "message", snap.Message)
		if p.sup.opts.OnEvent != nil {
			p.sup.opts.OnEvent(Event{Program: p.name, From: from, To: state, Time: now,
				PID: snap.PID, LastExit: snap.LastExit, Message: snap.Message})
		}
	}
}

// watchSpawns returns the snapshot, how many runs were begun, and a channel
// closed at the next change.
func (p *program) watchSpawns() (Status, int, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap, p.spawns, p.changed
}

// watch returns the snapshot, how many times it became RUNNING, and a
// channel closed at the next change.
func (p *program) watch() (Status, int, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap, p.runs, p.changed
}
