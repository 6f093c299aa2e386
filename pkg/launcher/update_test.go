package launcher

import (
	"os/user"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// TestConcurrentUpdatesAddOnce: two reloads at once (SIGHUP and `glmctl
// reload`) that both add a program start it once, and Run still stops it.
func TestConcurrentUpdatesAddOnce(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	// a takes stop_timeout to stop, which holds every Update between
	// deciding what to add and adding it.
	slow := func(env string) *config.Program {
		a := prog("a", selfCmd("ignore-term"))
		a.StopTimeout = 300 * time.Millisecond
		a.Env = map[string]string{"V": env}
		return a
	}
	h := startSupervisor(t, []*config.Program{slow("1")}, nil, nil)
	h.waitState("a", StateRunning, 20*time.Second)

	next := func() []*config.Program {
		d := prog("d", selfCmd("leaf", pidFile))
		d.StopSignal = "SIGKILL"
		return []*config.Program{slow("2"), d}
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.s.Update(ctxT(t, 30*time.Second), next())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Update %d: %v", i, err)
		}
	}
	h.waitState("d", StateRunning, 20*time.Second)
	waitFor(t, 20*time.Second, "d recorded its pid", func() bool { return countPIDs(t, pidFile) >= 1 })
	// shutdown fails the test if Run hangs on a loop it lost track of, or
	// if a process is left behind.
	h.shutdown()
	if n := countPIDs(t, pidFile); n != 1 {
		t.Errorf("d started %d times, want once", n)
	}
}

// TestStopOvertakenByStart: a Start that arrives while a Stop waits (the
// program goes from STOPPING straight to STARTING) completes that Stop
// instead of leaving it waiting for a STOPPED that never comes.
func TestStopOvertakenByStart(t *testing.T) {
	fc := newFakeClock()
	p := prog("p", selfCmd("ignore-term"))
	p.StartSecs = 0
	p.StopTimeout = time.Hour // STOPPING until the test fires it
	h := startSupervisor(t, []*config.Program{p}, fc.use, nil)
	first := h.waitState("p", StateRunning, 20*time.Second)
	waitFor(t, 20*time.Second, "ignoring TERM", func() bool { return h.linesOf("p", "ignoring TERM") == 1 })
	stopErr := make(chan error, 1)
	go func() { stopErr <- h.s.Stop(ctxT(t, 30*time.Second), "p") }()
	h.waitState("p", StateStopping, 20*time.Second)
	// The start is applied (the loop will start again once stopped) before
	// the stop completes; Start then waits for RUNNING.
	if _, err := h.s.program("p").do(command{kind: cmdStart}); err != nil {
		t.Fatal(err)
	}
	startErr := make(chan error, 1)
	go func() { startErr <- h.s.Start(ctxT(t, 30*time.Second), "p") }()
	fc.fire(t, stateTimer, p.StopTimeout)
	for name, errc := range map[string]chan error{"Stop": stopErr, "Start": startErr} {
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still waiting after the program was started again", name)
		}
	}
	if st := h.status("p"); st.State != StateRunning || st.PID == first.PID || st.Restarts != 0 {
		t.Errorf("status = %+v, want RUNNING with a new pid (was %d), no automatic restart", st, first.PID)
	}
	for _, e := range h.eventsFor("p") {
		if e.To == StateBackoff || e.To == StateStopped {
			t.Errorf("went %s (%s): the end of the stopped run was not a crash", e.To, e.Message)
		}
	}
}

// TestExecProbeRunsAsProgramUser: an exec health probe runs as the
// program's user, not as glmctl's (root).
func TestExecProbeRunsAsProgramUser(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this machine")
	}
	p := prog("p", []string{"/bin/sh", "-c", "exec sleep 600"}) // the test binary may not be readable by nobody
	p.User = "nobody"
	p.Directory = "/"
	p.Health = &config.Health{
		Exec:     []string{"/bin/sh", "-c", `test "$(id -u)" = "` + nobody.Uid + `"`},
		Interval: 100 * time.Millisecond, Timeout: 5 * time.Second, Failures: 1,
	}
	p.StartTimeout = 30 * time.Second
	p.Autostart = false
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	if err := h.s.Start(ctxT(t, 60*time.Second), "p"); err != nil {
		t.Fatalf("Start: %v (status %+v)", err, h.status("p"))
	}
	if st := h.status("p"); st.State != StateRunning || st.Health != HealthHealthy {
		t.Errorf("status = %+v", st)
	}
}
