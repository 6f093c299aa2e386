package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/glmctl/glmctl/internal/config"
)

// TestCrashRestarts: a program that crashes after start_secs is restarted
// after each crash, however many, and never goes FATAL (crashes are not
// failed starts).
func TestCrashRestarts(t *testing.T) {
	fc := newFakeClock()
	p := prog("crashy", selfCmd("exit-on-usr1", "1"))
	p.StartSecs = time.Second
	p.StartRetries = 1 // one crash counted as a failed start would make it FATAL
	p.Backoff = config.Backoff{Initial: time.Second, Max: 4 * time.Second}
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
	for run := 1; run <= 3; run++ {
		fc.fire(t, stateTimer, p.StartSecs)
		st := h.waitState("crashy", StateRunning, 10*time.Second)
		waitFor(t, 10*time.Second, "the handler of SIGUSR1", func() bool { return h.linesOf("crashy", "waiting") == run })
		if err := syscall.Kill(st.PID, syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		if run < 3 {
			h.leaveBackoff(fc, "crashy")
		}
	}
	st := h.waitState("crashy", StateBackoff, 10*time.Second)
	if st.LastExit == nil || *st.LastExit != 1 || st.Restarts != 2 {
		t.Errorf("status = %+v, want last exit 1 after 2 restarts", st)
	}
	running := 0
	for _, e := range h.eventsFor("crashy") {
		if e.To == StateRunning {
			running++
		}
		if e.To == StateFatal {
			t.Errorf("went FATAL: %s", e.Message)
		}
	}
	if running != 3 {
		t.Errorf("RUNNING %d times, want 3", running)
	}
}

func TestRestartPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy, code string
		restarts     bool
	}{
		{config.RestartAlways, "0", true}, // vLLM may exit 0 when its engine dies
		{config.RestartOnFailure, "0", false},
		{config.RestartOnFailure, "3", true},
		{config.RestartNever, "3", false},
	} {
		t.Run(tc.policy+"/"+tc.code, func(t *testing.T) {
			fc := newFakeClock()
			p := prog("p", selfCmd("crash", tc.code, "0s"))
			p.StartSecs = 0 // RUNNING at once: it exits after it was ready
			p.Restart = tc.policy
			p.Backoff = config.Backoff{Initial: time.Second, Max: 4 * time.Second}
			h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
			if tc.restarts {
				h.leaveBackoff(fc, "p")
				if st := h.status("p"); st.Restarts != 1 {
					t.Errorf("status = %+v, want 1 restart", st)
				}
				return
			}
			st := h.waitState("p", StateExited, 10*time.Second)
			if st.Restarts != 0 || st.LastExit == nil || *st.LastExit != atoi(tc.code) {
				t.Errorf("status = %+v", st)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	b := config.Backoff{Initial: time.Second, Max: 5 * time.Second}
	for _, tc := range []struct {
		n    int
		j    float64
		want time.Duration
	}{
		{1, 0, time.Second}, {2, 0, 2 * time.Second}, {3, 0, 4 * time.Second},
		{4, 0, 5 * time.Second}, {40, 0, 5 * time.Second}, {1, 0.999, 750250 * time.Microsecond},
	} {
		got := backoffDelay(b, tc.n, tc.j).Round(time.Millisecond)
		if got != tc.want.Round(time.Millisecond) {
			t.Errorf("backoffDelay(n=%d, j=%v) = %s, want %s", tc.n, tc.j, got, tc.want)
		}
	}
	if d := backoffDelay(config.Backoff{}, 7, 0.5); d != 0 {
		t.Errorf("zero backoff gave %s", d)
	}
}

// gaps returns, for each BACKOFF entry, the time until the next STARTING.
func backoffGaps(events []Event) []time.Duration {
	var gaps []time.Duration
	var since time.Time
	for _, e := range events {
		switch e.To {
		case StateBackoff:
			since = e.Time
		case StateStarting:
			if !since.IsZero() {
				gaps = append(gaps, e.Time.Sub(since))
				since = time.Time{}
			}
		}
	}
	return gaps
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	fc := newFakeClock()
	p := prog("p", selfCmd("crash", "1", "0s"))
	p.StartSecs = 0 // RUNNING at once: these are crashes, not failed starts
	p.Backoff = config.Backoff{Initial: time.Second, Max: 4 * time.Second}
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
	var delays []time.Duration
	for i, nominal := range []time.Duration{1, 2, 4, 4, 4, 4} {
		d := h.leaveBackoff(fc, "p")
		delays = append(delays, d)
		if want := nominal * time.Second; d < want*3/4 || d > want {
			t.Errorf("backoff %d = %s, want in [%s, %s]", i+1, d, want*3/4, want)
		}
	}
	h.waitState("p", StateBackoff, 10*time.Second)
	if gaps := backoffGaps(h.eventsFor("p")); !slices.Equal(gaps, delays) {
		t.Errorf("BACKOFF → STARTING gaps %v, want the delays %v", gaps, delays)
	}
	if st := h.status("p"); st.State == StateFatal {
		t.Errorf("crashes after RUNNING made it FATAL: %s", st.Message)
	}
}

// TestBackoffResetsAfterStableRun: the backoff sequence starts again after a
// run of max(60s, backoff.max) in RUNNING, and not after a shorter one.
func TestBackoffResetsAfterStableRun(t *testing.T) {
	fc := newFakeClock()
	p := prog("p", selfCmd("sleep"))
	p.StartSecs = 0
	p.Backoff = config.Backoff{Initial: time.Second, Max: 8 * time.Second}
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
	crashAfter := func(run time.Duration) time.Duration {
		t.Helper()
		st := h.waitState("p", StateRunning, 10*time.Second)
		fc.Advance(run)
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return h.leaveBackoff(fc, "p")
	}
	for i, tc := range []struct {
		run, want time.Duration
	}{
		{0, time.Second},
		{0, 2 * time.Second},
		{59 * time.Second, 4 * time.Second}, // not stable yet
		{60 * time.Second, time.Second},     // stable: the sequence starts again
	} {
		if d := crashAfter(tc.run); d < tc.want*3/4 || d > tc.want {
			t.Errorf("crash %d after %s RUNNING: backoff %s, want in [%s, %s]", i+1, tc.run, d, tc.want*3/4, tc.want)
		}
	}
}

func TestFatalAfterRetriesAndManualStart(t *testing.T) {
	fc := newFakeClock()
	okFile := filepath.Join(t.TempDir(), "ok")
	p := prog("p", selfCmd("crash", "1", "0s", okFile))
	p.StartSecs = time.Second // never reached: the clock stays put while it crashes
	p.StartRetries = 3
	p.Backoff = config.Backoff{Initial: time.Second, Max: 4 * time.Second}
	p.Autostart = false
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)

	errc := make(chan error, 1)
	go func() { errc <- h.s.Start(ctxT(t, 20*time.Second), "p") }()
	h.leaveBackoff(fc, "p")
	h.leaveBackoff(fc, "p")
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "FATAL") {
		t.Fatalf("Start = %v, want a FATAL error", err)
	}
	st := h.status("p")
	if st.State != StateFatal || !strings.Contains(st.Message, "3 failed starts") {
		t.Fatalf("status = %+v", st)
	}
	if err := os.WriteFile(okFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() { errc <- h.s.Start(ctxT(t, 20*time.Second), "p") }()
	fc.fire(t, stateTimer, p.StartSecs)
	if err := <-errc; err != nil {
		t.Fatalf("manual Start from FATAL: %v", err)
	}
	if st := h.status("p"); st.State != StateRunning || st.PID == 0 {
		t.Fatalf("status = %+v", st)
	}
}

// TestReadinessWindow: with a probe, a program is RUNNING once a probe
// passes, not before; meanwhile a refused connection is "loading".
func TestReadinessWindow(t *testing.T) {
	for _, name := range []string{"http", "unix", "tcp", "exec"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			goFile := filepath.Join(dir, "go") // the server listens once it exists
			addr := freePort(t)
			h := config.Health{Interval: time.Minute, Timeout: 5 * time.Second, Failures: 2}
			cmd := selfCmd("serve", addr, "file:"+goFile)
			switch name {
			case "http":
				h.HTTP = "http://" + addr + "/health"
			case "unix":
				sock := filepath.Join(dir, "s.sock")
				cmd = selfCmd("serve", "unix:"+sock, "file:"+goFile)
				h.HTTP, h.UnixSocket = "http://localhost/health", sock
			case "tcp":
				h.TCP = addr
			case "exec":
				cmd = selfCmd("sleep")
				h.Exec = []string{"/bin/sh", "-c", "test -f " + goFile}
			}
			fc := newFakeClock()
			p := prog("p", cmd)
			p.Health = &h
			p.StartTimeout = time.Hour
			p.Autostart = false
			hs := startSupervisor(t, []*config.Program{p}, fc.use, nil)
			errc := make(chan error, 1)
			go func() { errc <- hs.s.Start(ctxT(t, 30*time.Second), "p") }()
			var loading Status
			waitFor(t, 20*time.Second, "a STARTING message", func() bool {
				loading = hs.status("p")
				return loading.State == StateStarting && loading.Message != ""
			})
			if name != "exec" && loading.Message != "loading 0s" {
				t.Errorf("message while loading = %q, want loading 0s", loading.Message)
			}
			fc.fire(t, probeTimer, startingPoll)
			waitFor(t, 20*time.Second, "a second probe", func() bool {
				_, _, ok := fc.find(probeTimer, startingPoll)
				return ok
			})
			if st := hs.status("p"); st.State != StateStarting || hs.s.Ready("p") {
				t.Errorf("before the server is up: %+v", st)
			}
			if err := os.WriteFile(goFile, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if name != "exec" {
				waitFor(t, 20*time.Second, "the server listening", func() bool { return hs.linesOf("p", "listening") == 1 })
			}
			fc.fireUntil(t, probeTimer, startingPoll, "RUNNING", func() bool { return hs.s.Ready("p") })
			if err := <-errc; err != nil {
				t.Fatalf("Start: %v", err)
			}
			st := hs.status("p")
			if st.State != StateRunning || st.Health != HealthHealthy {
				t.Errorf("status = %+v", st)
			}
		})
	}
}

func TestStopWhileLoading(t *testing.T) {
	fc := newFakeClock()
	addr := freePort(t)
	p := prog("p", selfCmd("serve", addr, "file:"+filepath.Join(t.TempDir(), "never")))
	p.Health = &config.Health{HTTP: "http://" + addr + "/health", Interval: time.Minute, Timeout: time.Second, Failures: 1}
	p.Autostart = false
	p.StopTimeout = time.Hour // the clock does not move: a stop that needed SIGKILL would not end
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
	errc := make(chan error, 1)
	go func() { errc <- h.s.Start(ctxT(t, 30*time.Second), "p") }()
	waitFor(t, 20*time.Second, "loading", func() bool {
		return strings.HasPrefix(h.status("p").Message, "loading")
	})
	if err := h.s.Stop(ctxT(t, 20*time.Second), "p"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "STOPPED") {
		t.Errorf("Start interrupted by Stop = %v", err)
	}
}

func TestStartTimeoutIsFailedStart(t *testing.T) {
	fc := newFakeClock()
	p := prog("p", selfCmd("sleep"))
	p.Health = &config.Health{TCP: freePort(t), Interval: time.Minute, Timeout: time.Second, Failures: 1}
	p.StartTimeout = 10 * time.Minute
	p.StartRetries = 1
	p.Autostart = false
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
	errc := make(chan error, 1)
	go func() { errc <- h.s.Start(ctxT(t, 20*time.Second), "p") }()
	waitFor(t, 20*time.Second, "loading", func() bool {
		return strings.HasPrefix(h.status("p").Message, "loading")
	})
	fc.fire(t, stateTimer, p.StartTimeout)
	if err := <-errc; err == nil {
		t.Fatal("Start succeeded without a listener")
	}
	if st := h.status("p"); st.State != StateFatal || !strings.Contains(st.Message, "1 failed starts") {
		t.Errorf("status = %+v", st)
	}
	if ev := h.eventsFor("p"); len(ev) < 2 || ev[1].To != StateStopping || ev[1].Message != "not ready after 10m0s; stopping" {
		t.Errorf("events = %+v, want STARTING, then STOPPING not ready after 10m0s", ev)
	}
}

func TestHealthFailureRestarts(t *testing.T) {
	fc := newFakeClock()
	addr := freePort(t)
	fail := filepath.Join(t.TempDir(), "fail")
	p := prog("p", selfCmd("serve", addr, "0s", fail))
	p.Health = &config.Health{HTTP: "http://" + addr + "/health", Interval: time.Minute, Timeout: 5 * time.Second, Failures: 2}
	p.StartTimeout = time.Hour
	p.Backoff = config.Backoff{Initial: time.Second, Max: 4 * time.Second}
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
	fc.fireUntil(t, probeTimer, startingPoll, "RUNNING", func() bool { return h.s.Ready("p") })
	first := h.status("p")
	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fc.fire(t, probeTimer, p.Health.Interval)
	waitFor(t, 10*time.Second, "one failed probe", func() bool {
		return strings.HasPrefix(h.status("p").Message, "health check failed 1/2")
	})
	if st := h.status("p"); st.State != StateRunning || h.s.Ready("p") {
		t.Errorf("after one failed probe: %+v, Ready %v", st, h.s.Ready("p"))
	}
	fc.fire(t, probeTimer, p.Health.Interval)
	h.waitState("p", StateBackoff, 10*time.Second)
	os.Remove(fail)
	h.leaveBackoff(fc, "p")
	fc.fireUntil(t, probeTimer, startingPoll, "RUNNING again", func() bool { return h.s.Ready("p") })
	st := h.status("p")
	if st.PID == first.PID || st.Health != HealthHealthy || st.Restarts != 1 {
		t.Errorf("after restart: %+v (first pid %d)", st, first.PID)
	}
}

func TestStartOrderWaitsForHealth(t *testing.T) {
	addr := freePort(t)
	goFile := filepath.Join(t.TempDir(), "go")
	a := prog("a", selfCmd("serve", addr, "file:"+goFile))
	a.Health = &config.Health{HTTP: "http://" + addr + "/health", Interval: 50 * time.Millisecond, Timeout: time.Second, Failures: 2}
	b := prog("b", selfCmd("sleep"))
	b.DependsOn = []string{"a"}
	h := startSupervisor(t, []*config.Program{b, a}, nil, nil)
	waitFor(t, 20*time.Second, "a loading, b waiting for it", func() bool {
		return h.status("a").State == StateStarting && strings.Contains(h.status("b").Message, `waiting for "a"`)
	})
	if st := h.status("b"); st.State != StateStopped {
		t.Errorf("b while a loads: %+v", st)
	}
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitState("b", StateRunning, 20*time.Second)
	h.shutdown()

	at := func(name, state string) time.Time {
		for _, e := range h.eventsFor(name) {
			if e.To == state {
				return e.Time
			}
		}
		t.Fatalf("%s never %s", name, state)
		return time.Time{}
	}
	if at("b", StateStarting).Before(at("a", StateRunning)) {
		t.Error("b started before a was RUNNING")
	}
	if at("a", StateStopping).Before(at("b", StateStopped)) {
		t.Error("a stopped before its dependent b")
	}
}

func TestStartStartsDependencies(t *testing.T) {
	a := prog("a", selfCmd("sleep"))
	a.Autostart = false
	b := prog("b", selfCmd("sleep"))
	b.Autostart = false
	b.DependsOn = []string{"a"}
	bad := prog("bad", []string{"/nonexistent/glmctl-test"})
	bad.Autostart = false
	c := prog("c", selfCmd("sleep"))
	c.Autostart = false
	c.DependsOn = []string{"bad"}
	h := startSupervisor(t, []*config.Program{a, b, bad, c}, nil, nil)
	if err := h.s.Start(ctxT(t, 10*time.Second), "b"); err != nil {
		t.Fatal(err)
	}
	if !h.s.Ready("a") || !h.s.Ready("b") {
		t.Errorf("a ready %v, b ready %v", h.s.Ready("a"), h.s.Ready("b"))
	}
	err := h.s.Start(ctxT(t, 10*time.Second), "c")
	if err == nil || !strings.Contains(err.Error(), `dependency "bad"`) {
		t.Errorf("Start(c) = %v", err)
	}
	if st := h.status("c"); st.State != StateStopped {
		t.Errorf("c = %+v", st)
	}
	if _, err := h.s.Status("nope"); !errors.Is(err, ErrUnknownProgram) {
		t.Errorf("Status(nope) = %v", err)
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	fc := newFakeClock()
	p := prog("p", selfCmd("ignore-term"))
	p.StartSecs = 0
	p.StopTimeout = time.Hour
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
	waitFor(t, 10*time.Second, "ignoring TERM", func() bool {
		return h.linesOf("p", "ignoring TERM") == 1 && h.status("p").State == StateRunning
	})
	pid := h.status("p").PID
	stopped := make(chan error, 1)
	go func() { stopped <- h.s.Stop(ctxT(t, 20*time.Second), "p") }()
	h.waitState("p", StateStopping, 10*time.Second)
	waitFor(t, 10*time.Second, "the stop_timeout timer", func() bool {
		_, _, ok := fc.find(stateTimer, p.StopTimeout)
		return ok
	})
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned before stop_timeout: %v", err)
	default:
	}
	if !alive(pid) {
		t.Fatalf("pid %d died of SIGTERM", pid)
	}
	fc.fire(t, stateTimer, p.StopTimeout)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	st := h.status("p")
	if st.State != StateStopped || st.LastSignal != "SIGKILL" || st.LastExit == nil || *st.LastExit != 137 {
		t.Errorf("status = %+v", st)
	}
	if alive(pid) {
		t.Errorf("pid %d still alive", pid)
	}

	// The same program stops at once with a stop_signal it does not ignore
	// (the clock does not move: a stop that needed SIGKILL would not end).
	p2 := prog("p2", selfCmd("ignore-term"))
	p2.StartSecs = 0
	p2.StopSignal = "INT"
	p2.StopTimeout = time.Hour
	h2 := startSupervisor(t, []*config.Program{p2}, newFakeClock().use, nil)
	h2.waitState("p2", StateRunning, 20*time.Second)
	if err := h2.s.Stop(ctxT(t, 20*time.Second), "p2"); err != nil {
		t.Fatal(err)
	}
	if st := h2.status("p2"); st.LastSignal != "SIGINT" {
		t.Errorf("status = %+v, want killed by SIGINT", st)
	}
}

func TestProcessTreeDiesOnStopAndRestart(t *testing.T) {
	for _, mode := range []string{"pidns", "fallback"} {
		t.Run(mode, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pids")
			p := prog("p", selfCmd("tree", pidFile))
			p.StartSecs = 0
			p.StopTimeout = time.Hour // the clock does not move: a stop that needed SIGKILL would not end
			h := startSupervisor(t, []*config.Program{p}, newFakeClock().use, func(s *Supervisor) { s.noPIDNS.Store(mode == "fallback") })
			// tree, leaf-parent, leaf, escape (exits), orphaned setsid leaf
			waitFor(t, 20*time.Second, "5 pids", func() bool { return countPIDs(t, pidFile) >= 5 })
			st := h.waitState("p", StateRunning, 20*time.Second)
			old := liveTree(t, 5, func() []int { return keeperTree(st.PID) }) // keeper, tree, leaf-parent, leaf, orphan
			if err := h.s.Restart(ctxT(t, 30*time.Second), "p"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "old tree gone after restart", func() bool { return noneAlive(old) })
			waitFor(t, 20*time.Second, "new tree", func() bool { return countPIDs(t, pidFile) >= 10 })
			cur := liveTree(t, 5, func() []int { return keeperTree(h.status("p").PID) })
			// The TERM-ignoring leaves die with the main process.
			if err := h.s.Stop(ctxT(t, 30*time.Second), "p"); err != nil {
				t.Fatal(err)
			}
			if !noneAlive(cur) {
				t.Errorf("some of %v survived Stop", cur)
			}
		})
	}
}

func TestNothingSurvivesSupervisorDeath(t *testing.T) {
	for _, tc := range []struct {
		mode string
		sig  syscall.Signal
	}{{"pidns", syscall.SIGKILL}, {"fallback", syscall.SIGKILL}, {"pidns", syscall.SIGTERM}} {
		mode := tc.mode
		t.Run(mode+"/"+unix.SignalName(tc.sig), func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pids")
			cmd := execSelf("supervise", pidFile, mode)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "5 pids", func() bool { return countPIDs(t, pidFile) >= 5 })
			tree := liveTree(t, 5, func() []int { return descendants(cmd.Process.Pid) }) // keepers and the whole program
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if tc.sig == syscall.SIGTERM && err != nil {
				t.Errorf("supervisor after SIGTERM: %v, want a clean exit", err)
			}
			waitFor(t, 20*time.Second, "every descendant gone", func() bool { return noneAlive(tree) })
		})
	}
}

// noneAlive reports whether every one of pids is gone (or a zombie).
func noneAlive(pids []int) bool {
	for _, pid := range pids {
		if alive(pid) {
			return false
		}
	}
	return true
}

func TestMissingExecutableAndBadUser(t *testing.T) {
	missing := prog("missing", []string{"glmctl-no-such-program"})
	badUser := prog("baduser", selfCmd("sleep"))
	badUser.User = "nobody2"
	badDir := prog("baddir", selfCmd("sleep"))
	badDir.Directory = "/nonexistent/dir"
	progs := []*config.Program{missing, badUser, badDir}
	for _, p := range progs {
		p.Autostart = false
	}
	h := startSupervisor(t, progs, nil, nil)
	for name, want := range map[string]string{
		"missing": `exec: "glmctl-no-such-program": executable file not found in $PATH`,
		"baduser": `user "nobody2": unknown user`,
		"baddir":  `directory "/nonexistent/dir": no such file or directory`,
	} {
		err := h.s.Start(ctxT(t, 10*time.Second), name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Start(%s) = %v, want %q", name, err, want)
		}
		if st := h.status(name); st.State != StateFatal || st.Message != want {
			t.Errorf("%s: status = %+v, want FATAL %q", name, st, want)
		}
	}
}

func TestEnvDirectoryUser(t *testing.T) {
	dir := t.TempDir()
	script := `echo cwd=$(pwd); echo uid=$(id -u); echo FOO=$FOO; echo PRE=$PRE; echo HOME=$HOME; echo GPUS=$CUDA_VISIBLE_DEVICES; sleep 60`
	root := prog("root", []string{"/bin/sh", "-c", script})
	root.Directory = dir
	root.GPUs = []int{0, 2}
	root.Env = map[string]string{"FOO": "bar"}
	progs := []*config.Program{root}
	nobody, err := user.Lookup("nobody")
	if err == nil {
		u := prog("user", []string{"/bin/sh", "-c", script})
		u.Directory = "/"
		u.User = "nobody"
		progs = append(progs, u)
	}
	h := startSupervisor(t, progs, func(o *Options) {
		o.PreStart = func(_ context.Context, p *config.Program) ([]string, error) {
			return []string{"PRE=from-prestart-" + p.Name}, nil
		}
	}, nil)
	check := func(name string, want ...string) {
		t.Helper()
		waitFor(t, 10*time.Second, name+" output", func() bool {
			l, _ := h.s.Tail(name, 0)
			return len(l) >= 6
		})
		got, _ := h.s.Tail(name, 0)
		for i, w := range want {
			if got[i] != w {
				t.Errorf("%s line %d = %q, want %q", name, i, got[i], w)
			}
		}
	}
	check("root", "cwd="+dir, "uid=0", "FOO=bar", "PRE=from-prestart-root", "HOME="+os.Getenv("HOME"), "GPUS=0,2")
	if nobody != nil {
		check("user", "cwd=/", "uid="+nobody.Uid, "FOO=", "PRE=from-prestart-user", "HOME="+nobody.HomeDir, "GPUS=")
	}
}

func TestProgramSeesItsOwnProc(t *testing.T) {
	before, _ := os.ReadFile("/proc/self/mountinfo")
	h := startSupervisor(t, []*config.Program{prog("p", selfCmd("procself"))}, nil, nil)
	waitFor(t, 10*time.Second, "output", func() bool {
		l, _ := h.s.Tail("p", 1)
		return len(l) == 1
	})
	l, _ := h.s.Tail("p", 1)
	if !strings.HasSuffix(l[0], "own=true") {
		t.Errorf("program: %q, want /proc/<getpid()> to be itself", l[0])
	}
	after, _ := os.ReadFile("/proc/self/mountinfo")
	if string(before) != string(after) {
		t.Error("the program's /proc mount leaked into glmctl's mount namespace")
	}
}

func TestPreStartErrorIsFailedStart(t *testing.T) {
	p := prog("p", selfCmd("sleep"))
	p.StartRetries = 2
	p.Autostart = false
	h := startSupervisor(t, []*config.Program{p}, func(o *Options) {
		o.PreStart = func(context.Context, *config.Program) ([]string, error) {
			return nil, errors.New("GPU 2 has 3 GiB free, need 70 GiB")
		}
	}, nil)
	if err := h.s.Start(ctxT(t, 10*time.Second), "p"); err == nil {
		t.Fatal("Start succeeded")
	}
	st := h.status("p")
	if st.State != StateFatal || !strings.Contains(st.Message, "pre-start: GPU 2 has 3 GiB free") {
		t.Errorf("status = %+v", st)
	}
}

func TestUpdate(t *testing.T) {
	mk := func(name string) *config.Program { return prog(name, selfCmd("sleep")) }
	h := startSupervisor(t, []*config.Program{mk("a"), mk("b"), mk("c")}, nil, nil)
	for _, n := range []string{"a", "b", "c"} {
		h.waitState(n, StateRunning, 10*time.Second)
	}
	pa, pb := h.status("a").PID, h.status("b").PID

	bad := mk("x")
	bad.DependsOn = []string{"nope"}
	if err := h.s.Update(ctxT(t, 10*time.Second), []*config.Program{mk("a"), bad}); err == nil {
		t.Fatal("Update accepted an unknown dependency")
	}
	if st := h.status("c"); st.State != StateRunning {
		t.Fatalf("a rejected update touched c: %+v", st)
	}

	b := mk("b")
	b.Env = map[string]string{"NEW": "1"}
	if err := h.s.Update(ctxT(t, 10*time.Second), []*config.Program{mk("a"), b, mk("d")}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Status("c"); !errors.Is(err, ErrUnknownProgram) {
		t.Errorf("removed c: Status = %v", err)
	}
	h.waitState("d", StateRunning, 10*time.Second)
	stb := h.waitState("b", StateRunning, 10*time.Second)
	if stb.PID == pb {
		t.Error("changed b was not restarted")
	}
	if sta := h.status("a"); sta.PID != pa || sta.State != StateRunning {
		t.Errorf("unchanged a was touched: %+v (pid was %d)", sta, pa)
	}
	all, _ := h.s.Status("all")
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "a,b,d" {
		t.Errorf("programs after update = %v", names)
	}
}

func TestFollowAndTail(t *testing.T) {
	p := prog("p", selfCmd("sleep"))
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	h.waitState("p", StateRunning, 10*time.Second)
	waitFor(t, 10*time.Second, "the first run's line", func() bool {
		l, _ := h.s.Tail("p", 0)
		return len(l) == 1
	})
	ctx, cancel := context.WithCancel(context.Background())
	lines, err := h.s.Follow(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.s.Restart(ctxT(t, 10*time.Second), "p"); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "sleeping ") {
			t.Errorf("followed %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no line followed")
	}
	cancel()
	for range lines { // closed once ctx is done
	}
	if l, _ := h.s.Tail("p", 5); len(l) != 2 {
		t.Errorf("tail = %q, want two runs' lines", l)
	}
	if _, err := h.s.Tail("nope", 1); !errors.Is(err, ErrUnknownProgram) {
		t.Errorf("Tail(nope) = %v", err)
	}
}

// liveTree waits until tree lists at least n live processes and returns
// that list: one walk of /proc can miss an orphan whose parent is exiting.
func liveTree(t *testing.T, n int, tree func() []int) []int {
	t.Helper()
	var pids []int
	waitFor(t, 20*time.Second, fmt.Sprintf("%d live processes", n), func() bool {
		pids = tree()
		live := 0
		for _, p := range pids {
			if alive(p) {
				live++
			}
		}
		return live >= n
	})
	return pids
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestStopReachesStoppedProcess (issue 15): a program stopped with SIGSTOP
// gets SIGCONT with its stop signal, so it exits on SIGTERM by itself
// instead of waiting out stop_timeout for the SIGKILL.
func TestStopReachesStoppedProcess(t *testing.T) {
	p := prog("p", []string{"/bin/sh", "-c", "trap 'exit 7' TERM; echo up; while :; do sleep 0.05; done"})
	p.StartSecs = 0
	p.StopTimeout = time.Hour
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	h.waitState("p", StateRunning, 10*time.Second)
	waitFor(t, 10*time.Second, "the trap set", func() bool { return h.linesOf("p", "up") == 1 })
	pid := h.status("p").PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Stop(ctxT(t, 30*time.Second), "p"); err != nil {
		t.Fatal(err)
	}
	st := h.status("p")
	if st.LastExit == nil || *st.LastExit != 7 || st.LastSignal == "SIGKILL" {
		t.Fatalf("stopped program ended with exit %v signal %q: want its own exit 7 on SIGTERM", st.LastExit, st.LastSignal)
	}
}
