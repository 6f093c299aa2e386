package launcher

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/glmctl/glmctl/pkg/config"
)

func TestCrashRestarts(t *testing.T) {
	p := prog("crashy", selfCmd("crash", "1", "150ms"))
	p.StartSecs = 50 * time.Millisecond
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	waitFor(t, 10*time.Second, "two restarts", func() bool { return h.status("crashy").Restarts >= 2 })
	st := h.status("crashy")
	if st.LastExit == nil || *st.LastExit != 1 {
		t.Errorf("LastExit = %v, want 1", st.LastExit)
	}
	var sawRunning bool
	for _, e := range h.eventsFor("crashy") {
		sawRunning = sawRunning || e.To == StateRunning
		if e.To == StateFatal {
			t.Errorf("went FATAL: %s", e.Message)
		}
	}
	if !sawRunning {
		t.Error("never RUNNING between crashes")
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
			p := prog("p", selfCmd("crash", tc.code, "200ms"))
			p.StartSecs = 50 * time.Millisecond
			p.Restart = tc.policy
			h := startSupervisor(t, []*config.Program{p}, nil, nil)
			if tc.restarts {
				waitFor(t, 10*time.Second, "a restart", func() bool { return h.status("p").Restarts >= 1 })
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
	p := prog("p", selfCmd("crash", "1", "0s"))
	p.StartSecs = 0 // RUNNING at once: these are crashes, not failed starts
	p.Backoff = config.Backoff{Initial: 40 * time.Millisecond, Max: 160 * time.Millisecond}
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	waitFor(t, 15*time.Second, "6 backoffs", func() bool { return len(backoffGaps(h.eventsFor("p"))) >= 6 })
	h.shutdown()
	gaps := backoffGaps(h.eventsFor("p"))[:6]
	nominal := []time.Duration{40, 80, 160, 160, 160, 160}
	for i, g := range gaps {
		want := nominal[i] * time.Millisecond
		if g < want*3/4-2*time.Millisecond || g > want+300*time.Millisecond {
			t.Errorf("backoff %d = %s, want in [%s, %s]", i+1, g, want*3/4, want)
		}
	}
	if gaps[2] <= gaps[0] {
		t.Errorf("backoff does not grow: %v", gaps)
	}
	if st := h.status("p"); st.State == StateFatal {
		t.Errorf("crashes after RUNNING made it FATAL: %s", st.Message)
	}
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	p := prog("p", selfCmd("crash", "1", "300ms"))
	p.StartSecs = 0
	p.Backoff = config.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	h := startSupervisor(t, []*config.Program{p}, nil, func(s *Supervisor) { s.stableAfter = 200 * time.Millisecond })
	waitFor(t, 15*time.Second, "3 backoffs", func() bool { return len(backoffGaps(h.eventsFor("p"))) >= 3 })
	for i, g := range backoffGaps(h.eventsFor("p"))[:3] {
		if g > 250*time.Millisecond { // without the reset the third would be ≥ 300ms
			t.Errorf("backoff %d = %s after a stable run, want ≤ 100ms", i+1, g)
		}
	}
}

func TestFatalAfterRetriesAndManualStart(t *testing.T) {
	okFile := filepath.Join(t.TempDir(), "ok")
	p := prog("p", selfCmd("crash", "1", "0s", okFile))
	p.StartSecs = 300 * time.Millisecond
	p.StartRetries = 3
	p.Autostart = false
	h := startSupervisor(t, []*config.Program{p}, nil, nil)

	err := h.s.Start(ctxT(t, 10*time.Second), "p")
	if err == nil || !strings.Contains(err.Error(), "FATAL") {
		t.Fatalf("Start = %v, want a FATAL error", err)
	}
	st := h.status("p")
	if st.State != StateFatal || !strings.Contains(st.Message, "3 failed starts") {
		t.Fatalf("status = %+v", st)
	}
	if n := len(h.eventsFor("p")); n == 0 {
		t.Fatal("no events")
	}
	if err := os.WriteFile(okFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Start(ctxT(t, 10*time.Second), "p"); err != nil {
		t.Fatalf("manual Start from FATAL: %v", err)
	}
	if st := h.status("p"); st.State != StateRunning || st.PID == 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestReadinessWindow(t *testing.T) {
	dir := t.TempDir()
	tcp := freePort(t)
	sock := filepath.Join(dir, "s.sock")
	for _, tc := range []struct {
		name   string
		addr   string
		health config.Health
	}{
		{"http", tcp, config.Health{HTTP: "http://" + tcp + "/health"}},
		{"unix", "unix:" + sock, config.Health{HTTP: "http://localhost/health", UnixSocket: sock}},
		{"tcp", freePort(t), config.Health{}},
		{"exec", filepath.Join(dir, "ready"), config.Health{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.health
			h.Interval, h.Timeout, h.Failures = 100*time.Millisecond, time.Second, 2
			cmd := selfCmd("serve", tc.addr, "1500ms")
			switch tc.name {
			case "tcp":
				h.TCP = tc.addr
			case "exec":
				cmd = selfCmd("sleep")
				h.Exec = []string{"/bin/sh", "-c", "test -f " + tc.addr}
				time.AfterFunc(1500*time.Millisecond, func() { _ = os.WriteFile(tc.addr, nil, 0o600) })
			}
			p := prog("p", cmd)
			p.Health = &h
			p.Autostart = false
			hs := startSupervisor(t, []*config.Program{p}, nil, nil)
			t0 := time.Now()
			errc := make(chan error, 1)
			go func() { errc <- hs.s.Start(ctxT(t, 30*time.Second), "p") }()
			var loading Status
			waitFor(t, 20*time.Second, "a STARTING message", func() bool {
				loading = hs.status("p")
				return loading.State == StateStarting && loading.Message != ""
			})
			if tc.name != "exec" && !strings.HasPrefix(loading.Message, "loading ") {
				t.Errorf("message while loading = %q, want loading …", loading.Message)
			}
			if hs.s.Ready("p") {
				t.Error("Ready while loading")
			}
			if err := <-errc; err != nil {
				t.Fatalf("Start: %v", err)
			}
			if el := time.Since(t0); el < 1400*time.Millisecond {
				t.Errorf("RUNNING after %s, before the server was up", el)
			}
			st := hs.status("p")
			if st.State != StateRunning || st.Health != HealthHealthy || !hs.s.Ready("p") {
				t.Errorf("status = %+v", st)
			}
		})
	}
}

func TestStopWhileLoading(t *testing.T) {
	addr := freePort(t)
	p := prog("p", selfCmd("serve", addr, "1h"))
	p.Health = &config.Health{HTTP: "http://" + addr + "/health", Interval: 50 * time.Millisecond, Timeout: time.Second, Failures: 1}
	p.Autostart = false
	p.StopTimeout = 30 * time.Second // a stop that needed SIGKILL would take this long
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	errc := make(chan error, 1)
	go func() { errc <- h.s.Start(ctxT(t, 30*time.Second), "p") }()
	waitFor(t, 20*time.Second, "loading", func() bool {
		return strings.HasPrefix(h.status("p").Message, "loading")
	})
	t0 := time.Now()
	if err := h.s.Stop(ctxT(t, 60*time.Second), "p"); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el > 10*time.Second {
		t.Errorf("Stop during load took %s", el)
	}
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "STOPPED") {
		t.Errorf("Start interrupted by Stop = %v", err)
	}
}

func TestStartTimeoutIsFailedStart(t *testing.T) {
	p := prog("p", selfCmd("sleep"))
	p.Health = &config.Health{TCP: freePort(t), Interval: 50 * time.Millisecond, Timeout: time.Second, Failures: 1}
	p.StartTimeout = 300 * time.Millisecond
	p.StartRetries = 1
	p.Autostart = false
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	if err := h.s.Start(ctxT(t, 10*time.Second), "p"); err == nil {
		t.Fatal("Start succeeded without a listener")
	}
	if st := h.status("p"); st.State != StateFatal {
		t.Errorf("status = %+v", st)
	}
}

func TestHealthFailureRestarts(t *testing.T) {
	addr := freePort(t)
	fail := filepath.Join(t.TempDir(), "fail")
	p := prog("p", selfCmd("serve", addr, "0s", fail))
	p.Health = &config.Health{HTTP: "http://" + addr + "/health", Interval: 50 * time.Millisecond, Timeout: time.Second, Failures: 2}
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	first := h.waitState("p", StateRunning, 10*time.Second)
	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a restart", func() bool { return h.status("p").Restarts >= 1 })
	if h.s.Ready("p") {
		t.Error("Ready while failing health checks")
	}
	os.Remove(fail)
	st := h.waitState("p", StateRunning, 10*time.Second)
	if st.PID == first.PID || st.Health != HealthHealthy {
		t.Errorf("after restart: %+v (first pid %d)", st, first.PID)
	}
}

func TestStartOrderWaitsForHealth(t *testing.T) {
	addr := freePort(t)
	a := prog("a", selfCmd("serve", addr, "2s"))
	a.Health = &config.Health{HTTP: "http://" + addr + "/health", Interval: 50 * time.Millisecond, Timeout: time.Second, Failures: 2}
	b := prog("b", selfCmd("sleep"))
	b.DependsOn = []string{"a"}
	h := startSupervisor(t, []*config.Program{b, a}, nil, nil)
	waitFor(t, 20*time.Second, "a loading", func() bool { return h.status("a").State == StateStarting })
	if st := h.status("b"); st.State != StateStopped || !strings.Contains(st.Message, `waiting for "a"`) {
		t.Errorf("b while a loads: %+v", st)
	}
	h.waitState("b", StateRunning, 10*time.Second)
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
	p := prog("p", selfCmd("ignore-term"))
	p.StopTimeout = 400 * time.Millisecond
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	waitFor(t, 10*time.Second, "ignoring TERM", func() bool {
		l, _ := h.s.Tail("p", 1)
		return len(l) == 1 && l[0] == "ignoring TERM" && h.status("p").State == StateRunning
	})
	pid := h.status("p").PID
	t0 := time.Now()
	if err := h.s.Stop(ctxT(t, 10*time.Second), "p"); err != nil {
		t.Fatal(err)
	}
	el := time.Since(t0)
	if el < 400*time.Millisecond || el > 5*time.Second {
		t.Errorf("Stop took %s, want about stop_timeout (400ms)", el)
	}
	st := h.status("p")
	if st.State != StateStopped || st.LastSignal != "SIGKILL" || st.LastExit == nil || *st.LastExit != 137 {
		t.Errorf("status = %+v", st)
	}
	if alive(pid) {
		t.Errorf("pid %d still alive", pid)
	}

	// The same program stops at once with a stop_signal it does not ignore.
	p2 := prog("p2", selfCmd("ignore-term"))
	p2.StopSignal = "INT"
	p2.StopTimeout = 30 * time.Second // a stop that needed SIGKILL would take this long
	h2 := startSupervisor(t, []*config.Program{p2}, nil, nil)
	h2.waitState("p2", StateRunning, 20*time.Second)
	t0 = time.Now()
	if err := h2.s.Stop(ctxT(t, 60*time.Second), "p2"); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el > 10*time.Second {
		t.Errorf("Stop with SIGINT took %s", el)
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
			p.StopTimeout = 30 * time.Second // a stop that needed SIGKILL would take this long
			h := startSupervisor(t, []*config.Program{p}, nil, func(s *Supervisor) { s.noPIDNS.Store(mode == "fallback") })
			// tree, leaf-parent, leaf, escape (exits), orphaned setsid leaf
			waitFor(t, 20*time.Second, "5 pids", func() bool { return countPIDs(t, pidFile) >= 5 })
			st := h.waitState("p", StateRunning, 20*time.Second)
			old := keeperTree(st.PID) // keeper, tree, leaf-parent, leaf, orphan
			assertAlive(t, old, 5)
			if err := h.s.Restart(ctxT(t, 60*time.Second), "p"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "old tree gone after restart", func() bool { return noneAlive(old) })
			waitFor(t, 20*time.Second, "new tree", func() bool { return countPIDs(t, pidFile) >= 10 })
			cur := keeperTree(h.status("p").PID)
			assertAlive(t, cur, 5)
			t0 := time.Now()
			if err := h.s.Stop(ctxT(t, 60*time.Second), "p"); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(t0); el > 10*time.Second {
				t.Errorf("Stop took %s: the TERM-ignoring leaves should die with the main process", el)
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
			tree := descendants(cmd.Process.Pid) // keepers and the whole program
			assertAlive(t, tree, 5)
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

// assertAlive checks that at least n of pids are running.
func assertAlive(t *testing.T, pids []int, n int) {
	t.Helper()
	live := 0
	for _, p := range pids {
		if alive(p) {
			live++
		}
	}
	if live < n {
		t.Fatalf("%d of %v alive, want at least %d", live, pids, n)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
