package launcher

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/glmctl/glmctl/pkg/config"
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
