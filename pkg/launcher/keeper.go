package launcher

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The keeper is a small re-exec of the current executable that sits between
// the supervisor and each program. With CLONE_NEWPID it is PID 1 of a fresh
// PID namespace, so when it dies the kernel kills every process of the
// program, setsid escapees included. Without a namespace it is a child
// subreaper that hunts down every descendant itself.
//
// Protocol (both pipes are created by the supervisor):
//
//	fd 3, supervisor → keeper: one JSON keeperSpec line, then commands:
//	    "sig N"  forward signal N to every process of the program
//	    "kill"   SIGKILL every process of the program
//	  EOF means the supervisor is gone: SIGKILL everything and exit.
//	fd 4, keeper → supervisor: JSON keeperEvent lines:
//	    {"k":"started","pid":N}     the program was exec'd (N: its PID as the keeper sees it)
//	    {"k":"execerr","err":"…","errno":N} the program could not be started (not a crash)
//	    {"k":"exit","code":C,"sig":S} the program ended; everything else is dead and reaped
//	fd 1, 2: the program's stdout and stderr, passed through untouched.

// keeperEnv marks a process started as a keeper.
const keeperEnv = "GLMCTL_LAUNCHER_KEEPER"

// keeperExecFailed is the keeper's exit code when the program could not be started.
const keeperExecFailed = 127

// keeperSpec is what the keeper starts.
type keeperSpec struct {
	Argv   []string `json:"argv"`
	Dir    string   `json:"dir,omitempty"`
	Env    []string `json:"env"`
	UID    *uint32  `json:"uid,omitempty"`
	GID    uint32   `json:"gid,omitempty"`
	Groups []uint32 `json:"groups,omitempty"`
}

// keeperEvent is one message from the keeper to the supervisor.
type keeperEvent struct {
	Kind   string `json:"k"`
	PID    int    `json:"pid,omitempty"`
	Err    string `json:"err,omitempty"`
	Errno  int    `json:"errno,omitempty"` // execerr: the errno behind Err, if any
	Code   int    `json:"code,omitempty"`
	Signal int    `json:"sig,omitempty"`
}

// RunKeeperIfRequested turns the current process into a program keeper when
// the supervisor started it as one, and then never returns. Call it first
// thing in main (and in TestMain of packages whose tests supervise programs);
// in every other case it returns at once.
func RunKeeperIfRequested() {
	if os.Getenv(keeperEnv) != "1" {
		return
	}
	os.Exit(runKeeper())
}

// keeper is the state of a running keeper process.
type keeper struct {
	ctl     *os.File
	status  *os.File
	ppid    int
	initNS  bool // PID 1 of its own namespace: kill(-1) reaches exactly the program
	mainPID int
}

func runKeeper() int {
	// fds 3 and 4 came without close-on-exec; the program must not inherit them.
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	k := &keeper{
		ctl:    os.NewFile(3, "control"),
		status: os.NewFile(4, "status"),
		ppid:   os.Getppid(),
		initNS: os.Getpid() == 1,
	}
	if k.initNS {
		k.privateProc()
	} else {
		// Orphaned descendants are re-parented to us, so we can reap and find them.
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP,
		syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT)

	rd := bufio.NewReader(k.ctl)
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return 1 // the supervisor died before telling us what to run
	}
	var spec keeperSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		k.send(keeperEvent{Kind: "execerr", Err: fmt.Sprintf("keeper: bad spec: %v", err)})
		return keeperExecFailed
	}
	proc, err := startProgram(&spec)
	if err != nil {
		ev := keeperEvent{Kind: "execerr", Err: err.Error()}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			ev.Errno = int(errno) // the supervisor retries EAGAIN, ENOMEM… later
		}
		k.send(ev)
		return keeperExecFailed
	}
	k.mainPID = proc.Pid
	k.send(keeperEvent{Kind: "started", PID: proc.Pid})

	cmds := make(chan string)
	go func() {
		defer close(cmds)
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			cmds <- strings.TrimSpace(l)
		}
	}()

	ev := k.supervise(sigs, cmds)
	// Everything of the program is dead and reaped: close our ends of its
	// pipes, so that the supervisor has all output, then report.
	os.Stdout.Close()
	os.Stderr.Close()
	k.send(ev)
	k.status.Close()
	return 0
}

// privateProc mounts a /proc of the keeper's own PID namespace (the keeper
// runs in its own mount namespace too), so that the program's
// /proc/<getpid()> is itself, as Python's psutil and multiprocessing expect.
// Host mounts still propagate in; nothing propagates out.
func (k *keeper) privateProc() {
	err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, "")
	if err == nil {
		err = unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "glmctl keeper: cannot mount a private /proc (the program sees host PIDs there): %v\n", err)
	}
}

// supervise forwards signals and commands until the main program exits, then
// kills and reaps everything left and returns the program's exit event.
func (k *keeper) supervise(sigs <-chan os.Signal, cmds <-chan string) keeperEvent {
	var (
		exit   keeperEvent
		exited bool
	)
	reap := func() {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				return
			}
			if pid == k.mainPID {
				exited = true
				exit = exitEvent(ws)
			}
		}
	}
	tick := time.NewTicker(time.Second) // belt and braces for a coalesced SIGCHLD
	defer tick.Stop()
	reap()
	for !exited {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if sig == syscall.SIGCHLD {
				break
			}
			if os.Getppid() != k.ppid {
				// Our supervisor died (parent-death signal): nobody is left to wait.
				k.killAll(syscall.SIGKILL)
				break
			}
			k.killAll(sig)
		case c, ok := <-cmds:
			switch {
			case !ok:
				cmds = nil
				k.killAll(syscall.SIGKILL) // the supervisor is gone
			case c == "kill":
				k.killAll(syscall.SIGKILL)
			case strings.HasPrefix(c, "sig "):
				if n, err := strconv.Atoi(strings.TrimPrefix(c, "sig ")); err == nil && n > 0 {
					k.killAll(syscall.Signal(n))
				}
			}
		case <-tick.C:
		}
		reap()
	}
	// The main program is gone: nothing of it may outlive it.
	k.finish()
	return exit
}

// finish kills every remaining process of the program and reaps them all. As
// PID 1 of the namespace, or as a child subreaper, every descendant ends up as
// our child once its parent dies, so ECHILD means nothing of the program is left.
func (k *keeper) finish() {
	pause := time.Millisecond
	for {
		k.killAll(syscall.SIGKILL)
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return // ECHILD: no descendant left
			}
			if pid == 0 {
				break // some are still dying
			}
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// killAll sends sig to every process of the program. A process stopped by
// SIGSTOP (a debugger, a stuck `kill -STOP`) only acts on a signal once it
// runs again, so every signal but SIGKILL is followed by SIGCONT: a stop
// signal is honoured before the SIGKILL of stop_timeout.
func (k *keeper) killAll(sig syscall.Signal) {
	k.signalAll(sig)
	if sig != syscall.SIGKILL && sig != syscall.SIGCONT {
		k.signalAll(syscall.SIGCONT)
	}
}

func (k *keeper) signalAll(sig syscall.Signal) {
	if k.initNS {
		// From PID 1 of a namespace, kill(-1) reaches every other process in it.
		_ = syscall.Kill(-1, sig)
		return
	}
	if k.mainPID > 0 {
		_ = syscall.Kill(-k.mainPID, sig)
	}
	for _, pid := range descendants(os.Getpid()) {
		_ = syscall.Kill(pid, sig)
	}
}

func (k *keeper) send(ev keeperEvent) {
	b, _ := json.Marshal(ev)
	_, _ = k.status.Write(append(b, '\n'))
}

func exitEvent(ws syscall.WaitStatus) keeperEvent {
	if ws.Signaled() {
		return keeperEvent{Kind: "exit", Code: -1, Signal: int(ws.Signal())}
	}
	return keeperEvent{Kind: "exit", Code: ws.ExitStatus()}
}

// startProgram resolves and starts the program described by spec.
func startProgram(spec *keeperSpec) (*os.Process, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("empty command")
	}
	if spec.Dir != "" {
		if st, err := os.Stat(spec.Dir); err != nil {
			return nil, fmt.Errorf("directory %q: %w", spec.Dir, unwrapPathError(err))
		} else if !st.IsDir() {
			return nil, fmt.Errorf("directory %q: not a directory", spec.Dir)
		}
	}
	path, err := resolveCommand(spec.Argv[0], spec.Dir, spec.Env)
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("exec: %q: %w", spec.Argv[0], unwrapPathError(ee.Err))
		}
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	sys := &syscall.SysProcAttr{Setpgid: true}
	if spec.UID != nil {
		sys.Credential = &syscall.Credential{Uid: *spec.UID, Gid: spec.GID, Groups: spec.Groups}
	}
	p, err := os.StartProcess(path, spec.Argv, &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []*os.File{devnull, os.Stdout, os.Stderr},
		Sys:   sys,
	})
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Op == "chdir" {
			return nil, fmt.Errorf("directory %q: %w", spec.Dir, pe.Err)
		}
		return nil, fmt.Errorf("exec: %q: %w", spec.Argv[0], unwrapPathError(err))
	}
	return p, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// resolveCommand finds the executable like a shell would, with the program's
// PATH; a relative name with a slash is taken relative to dir.
func resolveCommand(name, dir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) && dir != "" {
			name = filepath.Join(dir, name)
		}
		return exec.LookPath(name)
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	_ = os.Setenv("PATH", path) // the keeper's own environment, used only for this lookup
	p, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		err = nil
	}
	return p, err
}

// descendants lists every live descendant of pid by walking /proc.
func descendants(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := procStat(pid)
		if !ok || state == 'Z' {
			continue
		}
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// procStat reads the parent PID and state of pid from /proc/PID/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) S ppid …"; comm may contain spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+4 > len(b) {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return ppid, f[0][0], true
}
