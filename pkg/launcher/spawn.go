package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/glmctl/glmctl/internal/config"
)

// exitInfo is how one run of a program ended.
type exitInfo struct {
	code   int            // exit code; -1 when killed by a signal or never run
	signal syscall.Signal // the signal that killed it, or 0
	// err is set when the program never ran: the pre-start hook failed
	// (prestart), or it could not be executed (fatal: executable, user, directory).
	err      error
	fatal    bool
	canceled bool // stopped before it was spawned
}

func (e exitInfo) String() string {
	switch {
	case e.err != nil:
		return e.err.Error()
	case e.canceled:
		return "stopped before start"
	case e.signal != 0:
		return "killed by " + unix.SignalName(e.signal)
	default:
		return "exited with code " + strconv.Itoa(e.code)
	}
}

// success reports a clean exit with code 0.
func (e exitInfo) success() bool {
	return e.err == nil && !e.canceled && e.signal == 0 && e.code == 0
}

// lastExit is the value shown as "last exit": the code, or 128+N for a
// signal death (the shell's convention), or nil when it never ran.
func (e exitInfo) lastExit() *int {
	if e.err != nil || e.canceled {
		return nil
	}
	v := e.code
	if e.signal != 0 {
		v = 128 + int(e.signal)
	}
	return &v
}

// instance is one run of a program: its keeper, pipes and readers. The
// program loop owns it; its goroutines report back through events.
type instance struct {
	p    *program
	cfg  *config.Program
	env  []string
	cred *syscall.Credential // the program's user; nil: glmctl's own

	ctx    context.Context // cancelled when the instance is stopped or ends
	cancel context.CancelFunc

	mu         sync.Mutex
	ctl        *os.File    // control pipe to the keeper; nil before spawn and after exit
	keeper     *os.Process // nil before spawn
	nsMode     bool
	pendingSig syscall.Signal
	killed     bool

	stopAsked atomic.Bool  // signal or kill was called
	pid       atomic.Int64 // the program's host PID
	prevPIDs  []int        // the previous run's tree; set by the loop before goAhead

	treeMu  sync.Mutex
	tree    []int         // latest sample of the program's host PIDs (gpu programs)
	ready   atomic.Bool   // set by the loop once RUNNING: probes slow down
	goAhead chan struct{} // closed when the program should start
	done    chan struct{}
	started time.Time // loop-owned

	// Owned by the loop.
	readyAt      time.Time
	failedStart  bool  // killed for not becoming ready in time
	startExpired bool  // start_timeout passed while no probe could run
	unhealthy    bool  // killed for failing its health checks
	stopping     bool  // stop_signal sent
	startTimer   Timer // start_secs or start_timeout, whichever applies
	stopTimer    Timer // stop_timeout
}

func newInstance(p *program, cfg *config.Program) *instance {
	ctx, cancel := context.WithCancel(p.sup.runCtx)
	return &instance{p: p, cfg: cfg, ctx: ctx, cancel: cancel, goAhead: make(chan struct{}),
		done: make(chan struct{}), started: p.sup.clock.Now()}
}

// run forks the keeper, waits for the go-ahead (a spare keeper waits here
// until the program next needs one), performs the pre-start hook, hands the
// keeper its spec and supervises it. It reports evExited as soon as the
// program is over and its output drained (the keeper reports the exit after
// it has killed and reaped every process of the program, so nothing of it is
// left), then waits for the keeper itself to be reaped.
func (in *instance) run() {
	defer close(in.done)
	// Pdeathsig fires when the thread that forked the keeper exits
	// (golang/go#27505), so that thread stays locked to this goroutine until
	// the keeper is reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	info, reaped := in.runKeeper()
	if reaped != nil && in.stopAsked.Load() {
		<-reaped // a stop is complete only when nothing is left, keeper included
	}
	in.cancel()
	in.p.send(event{kind: evExited, in: in, exit: info})
	if reaped != nil {
		<-reaped
	}
}

// runKeeper runs one keeper until the program is over; reaped (nil when no
// keeper was started) is closed once the keeper process is reaped.
func (in *instance) runKeeper() (exitInfo, <-chan struct{}) {
	s := in.p.sup
	k, err := in.startKeeper()
	if err != nil {
		return exitInfo{code: -1, err: fmt.Errorf("start keeper: %w", err), fatal: true}, nil
	}
	var (
		readers sync.WaitGroup
		last    keeperEvent
		ws      *os.ProcessState
		werr    error
	)
	readers.Add(3)
	go func() { defer readers.Done(); in.p.out.read(k.stdout, "stdout") }()
	go func() { defer readers.Done(); in.p.out.read(k.stderr, "stderr") }()
	go func() {
		defer readers.Done()
		last = in.readStatus(k.status)
	}()
	reaped := make(chan struct{})
	go func() {
		ws, werr = k.cmd.Process.Wait()
		close(reaped)
	}()

	select {
	case <-in.goAhead:
	case <-in.ctx.Done():
	}
	early, launched := in.launch(k)
	if !launched {
		k.ctl.Close() // the keeper exits when its control pipe closes before a spec
	} else if in.tracksTree() {
		go in.sampleTreeLoop()
	}

	// The keeper closes its ends of all pipes once the program is over.
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-reaped:
		select {
		case <-drained:
		case <-time.After(s.outputGrace):
			// Only possible without a PID namespace: an escaped process still
			// holds the pipes. Stop reading rather than hang.
			k.stdout.Close()
			k.stderr.Close()
			k.status.Close()
			<-drained
		}
	}
	in.mu.Lock()
	in.ctl = nil
	in.mu.Unlock()
	k.ctl.Close()
	k.stdout.Close()
	k.stderr.Close()
	k.status.Close()
	if !launched {
		return early, reaped
	}

	switch last.Kind {
	case "exit":
		if last.Signal != 0 {
			return exitInfo{code: -1, signal: syscall.Signal(last.Signal)}, reaped
		}
		return exitInfo{code: last.Code}, reaped
	case "execerr":
		var err error = errors.New(last.Err)
		if last.Errno != 0 {
			err = &errnoError{msg: last.Err, errno: syscall.Errno(last.Errno)}
		}
		return exitInfo{code: -1, err: err, fatal: true}, reaped
	}
	// The keeper died without reporting: it was SIGKILLed (stop escalation),
	// and the program with it.
	<-reaped
	if werr == nil {
		if st, ok := ws.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return exitInfo{code: -1, signal: st.Signal()}, reaped
		}
		if ws.ExitCode() == 0 {
			return exitInfo{code: -1, signal: syscall.SIGKILL}, reaped
		}
	}
	return exitInfo{code: -1, err: fmt.Errorf("keeper failed: %v", ws)}, reaped
}

// launch runs the pre-start hook and sends the keeper its spec. When it
// returns false the program was not started and info says why.
func (in *instance) launch(k *keeperProc) (info exitInfo, launched bool) {
	canceled := exitInfo{code: -1, canceled: true}
	if in.ctx.Err() != nil {
		return canceled, false
	}
	env, cred, err := in.prepare()
	if err != nil {
		return exitInfo{code: -1, err: err, fatal: true}, false
	}
	if wait := in.p.sup.opts.AwaitRelease; wait != nil && len(in.cfg.GPUs) > 0 && len(in.prevPIDs) > 0 {
		err := wait(in.ctx, in.cfg, in.prevPIDs)
		if in.ctx.Err() != nil {
			return canceled, false
		}
		if err != nil {
			return exitInfo{code: -1, err: fmt.Errorf("gpu release: %w", err)}, false
		}
	}
	if pre := in.p.sup.opts.PreStart; pre != nil {
		extra, err := pre(in.ctx, in.cfg)
		if in.ctx.Err() != nil {
			return canceled, false
		}
		if err != nil {
			return exitInfo{code: -1, err: fmt.Errorf("pre-start: %w", err)}, false
		}
		env = append(env, extra...)
	}
	in.env, in.cred = env, cred
	spec := keeperSpec{Argv: in.cfg.Command, Dir: in.cfg.Directory, Env: env}
	if cred != nil {
		spec.UID, spec.GID, spec.Groups = &cred.Uid, cred.Gid, cred.Groups
	}
	b, _ := json.Marshal(spec)
	in.mu.Lock()
	if in.ctx.Err() != nil {
		in.mu.Unlock()
		return canceled, false
	}
	if _, err := k.ctl.Write(append(b, '\n')); err != nil {
		in.mu.Unlock()
		return exitInfo{code: -1, err: fmt.Errorf("keeper: %w", err)}, false
	}
	in.ctl = k.ctl
	pending, killed := in.pendingSig, in.killed
	in.mu.Unlock()
	if killed {
		in.kill()
	} else if pending != 0 {
		in.signal(pending)
	}
	return exitInfo{}, true
}

// prepare builds the program's environment and credentials: glmctl's
// environment, then the user's HOME/USER/LOGNAME, CUDA_VISIBLE_DEVICES from
// gpus, then env (the pre-start hook's env is added last).
func (in *instance) prepare() ([]string, *syscall.Credential, error) {
	env := os.Environ()
	var cred *syscall.Credential
	if name := in.cfg.User; name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			var unk user.UnknownUserError
			if errors.As(err, &unk) {
				return nil, nil, fmt.Errorf("user %q: unknown user", name)
			}
			// With cgo, os/user keeps only the text of an errno (EMFILE…).
			return nil, nil, fmt.Errorf("user %q: %w", name, withStarvedErrno(err))
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return nil, nil, fmt.Errorf("user %q: non-numeric uid/gid", name)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if gids, err := u.GroupIds(); err == nil {
			for _, g := range gids {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil {
					cred.Groups = append(cred.Groups, uint32(n))
				}
			}
		}
		env = append(env, "HOME="+u.HomeDir, "USER="+u.Username, "LOGNAME="+u.Username)
	}
	if len(in.cfg.GPUs) > 0 {
		ids := make([]string, len(in.cfg.GPUs))
		for i, g := range in.cfg.GPUs {
			ids[i] = strconv.Itoa(g)
		}
		env = append(env, "CUDA_VISIBLE_DEVICES="+strings.Join(ids, ","))
	}
	for k, v := range in.cfg.Env {
		env = append(env, k+"="+v)
	}
	return dedupEnv(env), cred, nil
}

// dedupEnv keeps the last value of each variable, in first-seen order.
func dedupEnv(env []string) []string {
	idx := make(map[string]int, len(env))
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == keeperEnv {
			continue
		}
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// keeperProc is a started keeper and the parent's ends of its pipes.
type keeperProc struct {
	cmd                    *exec.Cmd
	ctl                    *os.File
	stdout, stderr, status *os.File
}

// startKeeper starts a keeper in a new PID namespace (or, where that is
// refused, as a plain child subreaper). The keeper waits for its spec.
func (in *instance) startKeeper() (*keeperProc, error) {
	s := in.p.sup
	if s.spawnFault != nil {
		if err := s.spawnFault(in.cfg.Name); err != nil {
			return nil, err
		}
	}
	var files []*os.File
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	fail := func(err error) (*keeperProc, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	ctlR, ctlW, err := pipe()
	if err != nil {
		return fail(err)
	}
	stR, stW, err := pipe()
	if err != nil {
		return fail(err)
	}
	outR, outW, err := pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := pipe()
	if err != nil {
		return fail(err)
	}
	kenv := []string{keeperEnv + "=1"}
	if v, ok := os.LookupEnv("GORACE"); ok {
		kenv = append(kenv, "GORACE="+v) // race builds: lets tests drop the 1 s sleep at exit
	}
	newCmd := func(ns bool) *exec.Cmd {
		c := &exec.Cmd{
			// The running binary itself, even if an upgrade replaced the file.
			Path:       "/proc/self/exe",
			Args:       []string{s.exe, "keeper", in.cfg.Name},
			Env:        kenv,
			Stdout:     outW,
			Stderr:     errW,
			ExtraFiles: []*os.File{ctlR, stW},
			SysProcAttr: &syscall.SysProcAttr{
				Setpgid:   true, // a terminal's ^C reaches glmctl only; it stops programs in order
				Pdeathsig: syscall.SIGKILL,
			},
		}
		if ns {
			// Its own mount namespace too, for a /proc that matches its PIDs.
			c.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS
		} else {
			// It must outlive us for a moment to kill its descendants.
			c.SysProcAttr.Pdeathsig = syscall.SIGTERM
		}
		return c
	}
	ns := !s.noPIDNS.Load()
	cmd := newCmd(ns)
	err = cmd.Start()
	if err != nil && ns && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC)) {
		if !s.noPIDNS.Swap(true) {
			s.log.Warn("PID namespaces unavailable; supervising without them (a program's setsid escapees may outlive a kill -9 of glmctl)", "error", err)
		}
		ns = false
		cmd = newCmd(false)
		err = cmd.Start()
	}
	if err != nil {
		return fail(err)
	}
	ctlR.Close()
	stW.Close()
	outW.Close()
	errW.Close()
	in.mu.Lock()
	in.keeper, in.nsMode = cmd.Process, ns
	in.mu.Unlock()
	in.pid.Store(int64(cmd.Process.Pid))
	return &keeperProc{cmd: cmd, ctl: ctlW, stdout: outR, stderr: errR, status: stR}, nil
}

// readStatus reads the keeper's events until EOF and returns the last one.
func (in *instance) readStatus(r *os.File) keeperEvent {
	var last keeperEvent
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var ev keeperEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		last = ev
		if ev.Kind == "started" {
			pid := ev.PID
			if in.nsModeNow() || pid <= 0 {
				pid = in.hostPID()
			}
			in.pid.Store(int64(pid))
			in.p.send(event{kind: evStarted, in: in})
		}
	}
	return last
}

func (in *instance) nsModeNow() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.nsMode
}

// hostPID finds the program's PID as glmctl sees it: the keeper's only child
// right after the start (from /proc/PID/task/*/children, else by a /proc
// scan). Falls back to the keeper's PID.
func (in *instance) hostPID() int {
	in.mu.Lock()
	kp := in.keeper.Pid
	in.mu.Unlock()
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(kp) + "/task")
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(kp) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if ppid, _, ok := procStat(pid); ok && ppid == kp {
				return pid
			}
		}
	}
	return kp
}

// signal asks the keeper to send sig to the whole program. Before the keeper
// runs, it cancels the start instead (and the signal is delivered if the
// spawn was already under way).
func (in *instance) signal(sig syscall.Signal) {
	in.stopAsked.Store(true)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.ctl == nil {
		in.pendingSig = sig
		in.cancel()
		return
	}
	_, _ = fmt.Fprintf(in.ctl, "sig %d\n", int(sig))
}

// kill SIGKILLs the whole program. In a PID namespace, killing the keeper
// makes the kernel kill every process in it. Without one, the keeper kills
// them; if it has not finished within a few seconds it is killed too.
func (in *instance) kill() {
	in.stopAsked.Store(true)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.killed = true
	if in.ctl == nil {
		in.cancel()
		return
	}
	if in.nsMode {
		_ = in.keeper.Kill()
		return
	}
	_, _ = fmt.Fprintln(in.ctl, "kill")
	k, done := in.keeper, in.done
	go func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = k.Kill()
		}
	}()
}

// tracksTree reports whether the program's process tree is sampled: it has
// gpus and the supervisor waits for their release between runs.
func (in *instance) tracksTree() bool {
	return in.p.sup.opts.AwaitRelease != nil && len(in.cfg.GPUs) > 0
}

// sampleTree records the host PIDs of every process of the program (the
// keeper's descendants). While the main process runs and no stop was asked,
// a sample replaces the last one (processes come and go); once it is
// stopping or its main process is gone, samples only add to it, so that the
// tree as it was is not replaced by the few processes still dying.
func (in *instance) sampleTree() {
	in.mu.Lock()
	k := in.keeper
	in.mu.Unlock()
	if k == nil {
		return
	}
	pids := descendants(k.Pid)
	in.treeMu.Lock()
	defer in.treeMu.Unlock()
	if in.stopAsked.Load() || !slices.Contains(pids, int(in.pid.Load())) {
		for _, pid := range in.tree {
			if !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) > 0 {
		in.tree = pids
	}
}

// sampleTreeLoop samples the tree at once and then every treeSample until
// the instance ends (vLLM's engine and workers appear during the load).
func (in *instance) sampleTreeLoop() {
	t := time.NewTicker(in.p.sup.treeSample)
	defer t.Stop()
	for {
		in.sampleTree()
		select {
		case <-in.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// treePIDs returns the latest sample of the program's PIDs, or nil.
func (in *instance) treePIDs() []int {
	in.treeMu.Lock()
	defer in.treeMu.Unlock()
	return slices.Clone(in.tree)
}
