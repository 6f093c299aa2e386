package launcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
)

// childArg marks a re-exec of the test binary as a test program.
const childArg = "launcher-test-child"

// TestMain lets the test binary act as a keeper, as a test program (see
// childMain) or as a supervising process (see superviseMain).
func TestMain(m *testing.M) {
	RunKeeperIfRequested()
	if _, ok := os.LookupEnv("GORACE"); !ok {
		// Race builds sleep 1 s at exit by default; keepers and test programs
		// (re-execs of this binary) inherit this.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	if len(os.Args) > 2 && os.Args[1] == childArg {
		os.Exit(childMain(os.Args[2], os.Args[3:]))
	}
	os.Exit(m.Run())
}

// childMain runs one small test behaviour and returns its exit code.
func childMain(mode string, args []string) int {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	dur := func(i int) time.Duration {
		d, _ := time.ParseDuration(arg(i))
		return d
	}
	forever := func() int {
		for {
			time.Sleep(time.Hour)
		}
	}
	switch mode {
	case "sleep": // print a line, then sleep
		fmt.Println("sleeping", os.Getpid())
		return forever()
	case "crash": // crash CODE AFTER [UNLESS_FILE]: exit CODE after AFTER, unless UNLESS_FILE exists
		fmt.Printf("start %d\n", time.Now().UnixNano())
		if f := arg(2); f != "" {
			if _, err := os.Stat(f); err == nil {
				fmt.Println("recovered")
				return forever()
			}
		}
		time.Sleep(dur(1))
		code, _ := strconv.Atoi(arg(0))
		fmt.Printf("exit %d\n", time.Now().UnixNano())
		return code
	case "exit-on-usr1": // exit-on-usr1 CODE: say "waiting", exit CODE at SIGUSR1
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		fmt.Println("waiting")
		<-usr1
		code, _ := strconv.Atoi(arg(0))
		return code
	case "ignore-term": // ignore SIGTERM and say so
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring TERM")
		return forever()
	case "serve": // serve ADDR DELAY|file:GOFILE [FAILFILE]: /health after DELAY or once GOFILE exists; 503 while FAILFILE exists
		if f, ok := strings.CutPrefix(arg(1), "file:"); ok {
			for _, err := os.Stat(f); err != nil; _, err = os.Stat(f) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		time.Sleep(dur(1))
		network, addr := "tcp", arg(0)
		if p, ok := strings.CutPrefix(addr, "unix:"); ok {
			network, addr = "unix", p
			os.Remove(addr)
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ERROR listen:", err)
			return 3
		}
		fmt.Println("listening")
		failFile := arg(2)
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := os.Stat(failFile); failFile != "" && err == nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		}))
		return 4
	case "tree": // tree PIDFILE: a child and grandchild ignoring TERM, and a setsid'd orphan
		appendPID(arg(0))
		spawnSelf("leaf-parent", false, arg(0))
		spawnSelf("escape", true, arg(0))
		fmt.Println("tree up")
		return forever()
	case "leaf-parent":
		signal.Ignore(syscall.SIGTERM)
		appendPID(arg(0))
		spawnSelf("leaf", false, arg(0))
		return forever()
	case "escape": // setsid'd (by the parent), starts a leaf and exits: the leaf is orphaned
		appendPID(arg(0))
		spawnSelf("leaf", true, arg(0))
		return 0
	case "leaf":
		signal.Ignore(syscall.SIGTERM)
		appendPID(arg(0))
		return forever()
	case "env": // print what the program sees
		wd, _ := os.Getwd()
		fmt.Printf("cwd=%s\nuid=%d\nFOO=%s\nPRE=%s\nHOME=%s\n", wd, os.Getuid(), os.Getenv("FOO"), os.Getenv("PRE"), os.Getenv("HOME"))
		return forever()
	case "procself": // is /proc/<getpid()> this process?
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", os.Getpid()))
		fmt.Printf("pid=%d own=%v\n", os.Getpid(), strings.Contains(string(b), "procself"))
		return forever()
	case "spew": // spew N SIZE: N lines of SIZE bytes, then sleep
		n, _ := strconv.Atoi(arg(0))
		size, _ := strconv.Atoi(arg(1))
		line := strings.Repeat("x", size)
		for i := range n {
			fmt.Printf("%05d %s\n", i, line)
		}
		fmt.Println("done")
		return forever()
	case "supervise": // supervise PIDFILE FALLBACK: run a supervisor over "tree"
		return superviseMain(arg(0), arg(1) == "fallback")
	case "starve": // supervise two programs through a descriptor shortage
		return starveMain()
	}
	fmt.Fprintln(os.Stderr, "unknown mode", mode)
	return 2
}

// spawnSelf starts the test binary in mode; setsid puts it in a new session.
func spawnSelf(mode string, setsid bool, args ...string) {
	cmd := exec.Command(os.Args[0], append([]string{childArg, mode}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR spawn:", err)
		return
	}
	go func() { _ = cmd.Wait() }()
}

func appendPID(file string) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d\n", os.Getpid())
}

// superviseMain is a supervising process for the kill -9 test.
func superviseMain(pidFile string, fallback bool) int {
	s, err := New([]*config.Program{{
		Name: "tree", Command: []string{os.Args[0], childArg, "tree", pidFile},
		StopTimeout: time.Second, Autostart: true,
	}}, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s.noPIDNS.Store(fallback)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := s.Run(ctx); err != nil {
		return 1
	}
	return 0
}

// selfCmd is the command line running the test binary in mode.
func selfCmd(mode string, args ...string) []string {
	return append([]string{os.Args[0], childArg, mode}, args...)
}

// prog is a program with short test defaults.
func prog(name string, cmd []string) *config.Program {
	return &config.Program{
		Name:         name,
		Command:      cmd,
		Restart:      config.RestartAlways,
		StartSecs:    100 * time.Millisecond,
		StartRetries: 5,
		StartTimeout: 10 * time.Second,
		StopSignal:   "SIGTERM",
		StopTimeout:  2 * time.Second,
		Backoff:      config.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
		Autostart:    true,
	}
}

// harness runs a Supervisor for one test.
type harness struct {
	t      *testing.T
	s      *Supervisor
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	events []Event
}

// startSupervisor runs progs; mod may change the options, setup the
// Supervisor before Run (either may be nil).
func startSupervisor(t *testing.T, progs []*config.Program, mod func(*Options), setup func(*Supervisor)) *harness {
	t.Helper()
	h := &harness{t: t, done: make(chan error, 1)}
	opts := Options{
		Logger: hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn, Output: testWriter{t}}),
		OnEvent: func(e Event) {
			h.mu.Lock()
			h.events = append(h.events, e)
			h.mu.Unlock()
		},
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(progs, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if setup != nil {
		setup(s)
	}
	h.s = s
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- s.Run(ctx) }()
	t.Cleanup(h.shutdown)
	return h
}

// shutdown cancels Run and waits for it (idempotent). On a fake clock it
// keeps firing the state timers meanwhile, so that stop_timeout ends the
// programs that ignore their stop signal.
func (h *harness) shutdown() {
	h.t.Helper()
	h.cancel()
	if fc, ok := h.s.clock.(*fakeClock); ok {
		stop := make(chan struct{})
		defer close(stop)
		go fc.runStateTimers(stop)
	}
	select {
	case err, ok := <-h.done:
		if ok && err != nil {
			h.t.Errorf("Run: %v", err)
		}
		if ok {
			close(h.done)
			// Run returns only once everything it started is reaped.
			if left := descendants(os.Getpid()); len(left) > 0 {
				h.t.Errorf("processes left after Run returned: %v", left)
			}
		}
	case <-time.After(20 * time.Second):
		h.t.Fatalf("Run did not return after cancel")
	}
}

func (h *harness) status(name string) Status {
	h.t.Helper()
	st, err := h.s.Status(name)
	if err != nil {
		h.t.Fatalf("Status(%q): %v", name, err)
	}
	return st[0]
}

// eventsFor returns the transitions of one program so far.
func (h *harness) eventsFor(name string) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if e.Program == name {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) waitState(name, state string, timeout time.Duration) Status {
	h.t.Helper()
	var st Status
	waitFor(h.t, timeout, name+" "+state, func() bool {
		st = h.status(name)
		return st.State == state
	})
	return st
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// countPIDs counts the processes of a tree that recorded themselves.
func countPIDs(t *testing.T, file string) int {
	return len(readPIDs(t, file))
}

// keeperTree lists, as host PIDs, the keeper of the program whose main
// process is pid, and every descendant of that keeper.
func keeperTree(pid int) []int {
	keeper, _, ok := procStat(pid)
	if !ok {
		return nil
	}
	return append([]int{keeper}, descendants(keeper)...)
}

// readPIDs reads the PIDs a process tree recorded.
func readPIDs(t *testing.T, file string) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != 'Z'
}

// linesOf counts the program's kept output lines equal to line.
func (h *harness) linesOf(name, line string) int {
	l, _ := h.s.Tail(name, 0)
	n := 0
	for _, x := range l {
		if x == line {
			n++
		}
	}
	return n
}

// logBuf collects log output for tests that count log lines.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

// count counts the lines that contain s.
func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// freePort returns a loopback address nobody listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// execSelf is a command running the test binary in mode.
func execSelf(mode string, args ...string) *exec.Cmd {
	c := selfCmd(mode, args...)
	return exec.Command(c[0], c[1:]...)
}
