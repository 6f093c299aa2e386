package launcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/glmctl/glmctl/internal/config"
)

func TestStarvedErrors(t *testing.T) {
	socket := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	backlog := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EAGAIN)}
	for _, tc := range []struct {
		name          string
		err           error
		spawn, probed bool // starved, probeStarved
	}{
		{"pipe2 EMFILE", fmt.Errorf("start keeper: %w", os.NewSyscallError("pipe2", syscall.EMFILE)), true, true},
		{"ENFILE", &os.PathError{Op: "open", Path: os.DevNull, Err: syscall.ENFILE}, true, true},
		{"fork EAGAIN", &os.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: syscall.EAGAIN}, true, true},
		{"clone ENOMEM", &os.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: syscall.ENOMEM}, true, true},
		{"HTTP socket EMFILE", &url.Error{Op: "Get", URL: "http://127.0.0.1:1/health", Err: socket}, true, true},
		{"keeper execerr", &errnoError{msg: `exec: "vllm": resource temporarily unavailable`, errno: syscall.EAGAIN}, true, true},
		{"cgo user lookup", withStarvedErrno(errors.New("user: lookup username vllm: too many open files")), true, true},
		{"unix backlog full", backlog, true, false},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false, false},
		{"missing executable", errors.New(`exec: "foo": executable file not found in $PATH`), false, false},
		{"unknown user", withStarvedErrno(errors.New(`user "nobody2": unknown user`)), false, false},
		{"nil", nil, false, false},
	} {
		if got := starved(tc.err); got != tc.spawn {
			t.Errorf("%s: starved = %v, want %v", tc.name, got, tc.spawn)
		}
		if tc.err == nil {
			continue
		}
		if got := probeStarved(tc.err); got != tc.probed {
			t.Errorf("%s: probeStarved = %v, want %v", tc.name, got, tc.probed)
		}
	}
}

// TestStarvedSpawnNeverFatal: spawns that fail for want of descriptors,
// memory or processes (20 EMFILEs in a row, a few of each other errno)
// leave the program in BACKOFF, retried with the capped backoff, never FATAL
// (with start_retries = 1 one counted failure would be); it reaches RUNNING
// once the fault clears, and the log tells the shortage and the recovery
// once each.
func TestStarvedSpawnNeverFatal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault error
		n     int
		msg   string
	}{
		{"EMFILE", os.NewSyscallError("pipe2", syscall.EMFILE), 20, "start keeper: pipe2: too many open files"},
		{"ENFILE", &os.PathError{Op: "open", Path: os.DevNull, Err: syscall.ENFILE}, 3, "start keeper: open /dev/null: too many open files in system"},
		{"EAGAIN", &os.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: syscall.EAGAIN}, 3, "start keeper: fork/exec /proc/self/exe: resource temporarily unavailable"},
		{"ENOMEM", &os.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: syscall.ENOMEM}, 3, "start keeper: fork/exec /proc/self/exe: cannot allocate memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := newFakeClock()
			p := prog("vllm", selfCmd("sleep"))
			p.StartSecs = 0
			p.StartRetries = 1
			p.Backoff = config.Backoff{Initial: time.Second, Max: 8 * time.Second}
			p.Autostart = false
			logs := &logBuf{}
			var spawns atomic.Int32
			h := startSupervisor(t, []*config.Program{p},
				func(o *Options) {
					fc.use(o)
					o.Logger = hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Info, Output: logs})
				},
				func(s *Supervisor) {
					s.spawnFault = func(string) error {
						if int(spawns.Add(1)) <= tc.n {
							return tc.fault
						}
						return nil
					}
				})
			errc := make(chan error, 1)
			go func() { errc <- h.s.Start(ctxT(t, 60*time.Second), "vllm") }()

			st := h.waitState("vllm", StateBackoff, 10*time.Second)
			if want := "spawn failed: " + tc.msg + "; retrying in 1s"; st.Message != want {
				t.Errorf("message = %q, want %q", st.Message, want)
			}
			for i := 1; i <= tc.n; i++ {
				st := h.waitState("vllm", StateBackoff, 10*time.Second)
				if !strings.HasPrefix(st.Message, "spawn failed: "+tc.msg+"; retrying in ") {
					t.Errorf("failure %d: message %q", i, st.Message)
				}
				if d := h.leaveBackoff(fc, "vllm"); d < starvedRetryMin || d > p.Backoff.Max {
					t.Errorf("failure %d: retried after %s, want in [%s, %s]", i, d, starvedRetryMin, p.Backoff.Max)
				}
			}
			if err := <-errc; err != nil {
				t.Fatalf("Start: %v", err)
			}
			if st := h.status("vllm"); st.State != StateRunning || st.PID == 0 || st.Message != "" {
				t.Errorf("status = %+v", st)
			}
			for _, e := range h.eventsFor("vllm") {
				if e.To == StateFatal {
					t.Errorf("went FATAL: %s", e.Message)
				}
			}
			if n, m := logs.count("cannot spawn"), logs.count("spawning works again"); n != 1 || m != 1 {
				t.Errorf("logged the shortage %d times and the recovery %d times, want once each", n, m)
			}
		})
	}
}

// starveDial fails dials as socket(2) does when descriptors run out, while
// starve is set.
func starveDial(starve *atomic.Bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if starve.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// TestStarvedProbeDoesNotRestart: probes that cannot run for want of
// descriptors neither count as failures (failures = 1) nor restart a
// RUNNING program; the shortage is logged once, and real failures still
// count once probes run again.
func TestStarvedProbeDoesNotRestart(t *testing.T) {
	fc := newFakeClock()
	addr := freePort(t)
	fail := filepath.Join(t.TempDir(), "fail")
	p := prog("vllm", selfCmd("serve", addr, "0s", fail))
	p.Health = &config.Health{HTTP: "http://" + addr + "/health", Interval: time.Minute, Timeout: 5 * time.Second, Failures: 1}
	p.StartTimeout = time.Hour
	logs := &logBuf{}
	var starve atomic.Bool
	h := startSupervisor(t, []*config.Program{p},
		func(o *Options) {
			fc.use(o)
			o.Logger = hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Info, Output: logs})
		},
		func(s *Supervisor) { s.probeDial = starveDial(&starve) })
	fc.fireUntil(t, probeTimer, startingPoll, "RUNNING", func() bool { return h.s.Ready("vllm") })
	first := h.status("vllm")

	starve.Store(true)
	for range 5 {
		fc.fire(t, probeTimer, p.Health.Interval)
		// fire returns before the probe it set off has run; the probe loop
		// arms its timer again once the probe was reported. Without this
		// wait the fifth probe may dial after starve is cleared below, and
		// the sixth, meant to pass, runs after the fail file is written.
		fc.waitPending(t, probeTimer, p.Health.Interval)
	}
	waitFor(t, 10*time.Second, "the shortage in the status", func() bool {
		return strings.Contains(h.status("vllm").Message, "socket: too many open files); not counted as a failure")
	})
	starve.Store(false)
	fc.fire(t, probeTimer, p.Health.Interval)
	waitFor(t, 10*time.Second, "probes running again", func() bool { return logs.count("health probes run again") == 1 })
	// Events are handled in order: the five starved probes are behind us,
	// and so is the sixth, the first that could run.
	st := h.status("vllm")
	if st.State != StateRunning || st.PID != first.PID || st.Restarts != 0 || st.Health != HealthHealthy || st.Message != "" {
		t.Errorf("after starved probes: %+v (pid was %d)", st, first.PID)
	}
	if n := logs.count("health probe cannot run"); n != 1 {
		t.Errorf("logged the shortage %d times, want once", n)
	}

	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fc.fire(t, probeTimer, p.Health.Interval)
	failedAt := fc.Now()
	// STOPPING lasts only until the program exits (then BACKOFF, whose timer
	// nothing fires here), too briefly to be sure to see in the status: look
	// for the transition.
	waitFor(t, 10*time.Second, "a restart after a real failure", func() bool {
		for _, e := range h.eventsFor("vllm") {
			if e.From == StateRunning && e.To == StateStopping && strings.HasPrefix(e.Message, "health check failed 1/1") {
				if !e.Time.Equal(failedAt) {
					t.Errorf("restarted at %s, want at the seventh probe, %s", e.Time, failedAt)
				}
				return true
			}
		}
		return false
	})
}

// TestStarvedProbeDefersStartTimeout: start_timeout does not stop a program
// whose probes could not run; the first probe that can decides.
func TestStarvedProbeDefersStartTimeout(t *testing.T) {
	fc := newFakeClock()
	addr := freePort(t)
	goFile := filepath.Join(t.TempDir(), "go")
	p := prog("vllm", selfCmd("serve", addr, "file:"+goFile))
	p.Health = &config.Health{TCP: addr, Interval: time.Minute, Timeout: 5 * time.Second, Failures: 1}
	p.StartTimeout = 10 * time.Minute
	p.StartRetries = 1
	p.Autostart = false
	var starve atomic.Bool
	starve.Store(true)
	h := startSupervisor(t, []*config.Program{p}, fc.use, func(s *Supervisor) { s.probeDial = starveDial(&starve) })
	errc := make(chan error, 1)
	go func() { errc <- h.s.Start(ctxT(t, 30*time.Second), "vllm") }()
	waitFor(t, 10*time.Second, "a starved probe", func() bool {
		return strings.Contains(h.status("vllm").Message, "health probe could not run")
	})
	fc.fire(t, stateTimer, p.StartTimeout)
	waitFor(t, 10*time.Second, "start_timeout noted", func() bool {
		return strings.HasPrefix(h.status("vllm").Message, "not ready after 10m0s, and the health probe")
	})
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the server listening", func() bool { return h.linesOf("vllm", "listening") == 1 })
	starve.Store(false)
	fc.fireUntil(t, probeTimer, startingPoll, "RUNNING", func() bool { return h.s.Ready("vllm") })
	if err := <-errc; err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st := h.status("vllm"); st.Restarts != 0 {
		t.Errorf("status = %+v, want no restart", st)
	}
}

// TestStarvedSupervisorRecovers runs a supervisor in a re-exec of the test
// binary that really runs out of descriptors (see starveMain): probes fail
// with EMFILE and a spawn fails with EMFILE, nothing is restarted or FATAL,
// and everything recovers by itself once the descriptors come back.
func TestStarvedSupervisorRecovers(t *testing.T) {
	cmd := execSelf("starve")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "recovered\n") {
		t.Fatalf("starving supervisor: %v\n%s", err, out)
	}
}

// starveMain lowers this process's descriptor limit (only this re-exec of
// the test binary: tests run in parallel), runs a program with a TCP probe,
// uses up every descriptor, starts a second program, checks both ride it out,
// frees the descriptors and checks both recover.
func starveMain() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
		return 1
	}
	addr, err := func() (string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer ln.Close()
		return ln.Addr().String(), nil
	}()
	if err != nil {
		return fail("%v", err)
	}
	probed := &config.Program{
		Name: "probed", Command: selfCmd("serve", addr, "0s"), Restart: config.RestartAlways,
		Health:       &config.Health{TCP: addr, Interval: 20 * time.Millisecond, Timeout: time.Second, Failures: 1},
		StartTimeout: 30 * time.Second, StopTimeout: 5 * time.Second, StartRetries: 1,
	}
	spawned := &config.Program{
		Name: "spawned", Command: selfCmd("sleep"), Restart: config.RestartAlways,
		StopTimeout: 5 * time.Second, StartRetries: 1,
		Backoff: config.Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
	}
	s, err := New([]*config.Program{probed, spawned}, Options{
		Logger: hclog.New(&hclog.LoggerOptions{Name: "starve", Level: hclog.Info, Output: os.Stderr}),
	})
	if err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	status := func(name string) Status {
		st, _ := s.Status(name)
		return st[0]
	}
	wait := func(what string, cond func() bool) bool {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if cond() {
				return true
			}
		}
		fmt.Fprintf(os.Stderr, "timed out waiting for %s: probed %+v, spawned %+v\n", what, status("probed"), status("spawned"))
		return false
	}
	if err := s.Start(ctx, "probed"); err != nil {
		return fail("start probed: %v", err)
	}
	pid := status("probed").PID

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fail("%v", err)
	}
	lim.Cur = min(lim.Cur, 256)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fail("%v", err)
	}
	var hog []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				return fail("filling the descriptor table: %v", err)
			}
			break
		}
		hog = append(hog, f)
	}
	fmt.Printf("holding %d descriptors\n", len(hog))
	startErr := make(chan error, 1)
	go func() { startErr <- s.Start(ctx, "spawned") }()
	if !wait("starved probes and a starved spawn retried", func() bool {
		return strings.Contains(status("probed").Message, "too many open files") &&
			status("spawned").State == StateBackoff && status("spawned").Restarts >= 1 &&
			strings.Contains(status("spawned").Message, "too many open files")
	}) {
		return 1
	}
	if st := status("probed"); st.State != StateRunning || st.PID != pid || st.Restarts != 0 {
		return fail("probed while starved: %+v", st)
	}
	for _, f := range hog {
		f.Close()
	}
	if err := <-startErr; err != nil {
		return fail("start spawned: %v", err)
	}
	if !wait("recovery", func() bool { return status("probed").Message == "" && s.Ready("spawned") }) {
		return 1
	}
	if st := status("probed"); st.State != StateRunning || st.PID != pid || st.Restarts != 0 {
		return fail("probed after recovery: %+v", st)
	}
	fmt.Println("recovered")
	return 0
}
