package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/launcher"
)

// reloadConfig is a program that ignores SIGTERM (so stopping it takes its
// stop_timeout) and whose env differs between generations.
const reloadConfig = `
control { socket = "%s/glmctl.sock" }
program "p" {
  command      = ["/bin/sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.2; done"]
  env          = { GEN = "%s" }
  start_secs   = "100ms"
  stop_timeout = "1s"
}
`

// TestReloadOutlivesItsCaller: a CLI that stops waiting for `glmctl reload`
// (its request context ends while the changed program is still stopping)
// does not leave the program stopped with the old config.
func TestReloadOutlivesItsCaller(t *testing.T) {
	dir := t.TempDir()
	parse := func(gen string) *config.Config {
		cfg, err := config.Parse([]byte(fmt.Sprintf(reloadConfig, dir, gen)), filepath.Join(dir, "glmctl.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	var mu sync.Mutex
	gen := "1"
	d, err := New(parse("1"), Options{Reload: func() (*config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return parse(gen), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, d)
	status := func() launcher.Status { return statusOf(t, d, "p") }
	waitFor(t, 20*time.Second, "p RUNNING", func() bool { return status().State == launcher.StateRunning })
	oldPID := status().PID

	mu.Lock()
	gen = "2"
	mu.Unlock()
	rctx, rcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer rcancel()
	if err := d.Reload(rctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	waitFor(t, 20*time.Second, "p RUNNING again with the new config", func() bool {
		st := status()
		return st.State == launcher.StateRunning && st.PID != oldPID && d.config().Program("p").Env["GEN"] == "2"
	})
}

// TestConcurrentReloads: SIGHUP and `glmctl reload` at the same moment both
// succeed and leave one running program.
func TestConcurrentReloads(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	n := 0
	d, err := New(mustParse(t, fmt.Sprintf(reloadConfig, dir, "0"), dir), Options{Reload: func() (*config.Config, error) {
		mu.Lock()
		n++
		g := n
		mu.Unlock()
		return config.Parse([]byte(fmt.Sprintf(reloadConfig, dir, fmt.Sprint(g))), filepath.Join(dir, "glmctl.hcl"))
	}})
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, d)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = d.Reload(context.Background()) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Reload %d: %v", i, err)
		}
	}
	var last []launcher.Status
	deadline := time.Now().Add(20 * time.Second)
	for {
		last, _ = d.sup.Status("p")
		if len(last) == 1 && last[0].State == launcher.StateRunning && d.config().Program("p").Env["GEN"] == "3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("p not RUNNING with the last config (GEN %q): %+v", d.config().Program("p").Env["GEN"], last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustParse(t *testing.T, src, dir string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(src), filepath.Join(dir, "glmctl.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runDaemon runs d until the test ends, then stops it and checks that Run
// returned cleanly within 30 s. It returns the context d runs under.
func runDaemon(t *testing.T, d *Daemon) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return ctx
}

// statusOf is the status of the daemon's program name.
func statusOf(t *testing.T, d *Daemon, name string) launcher.Status {
	t.Helper()
	st, err := d.sup.Status(name)
	if err != nil {
		t.Fatal(err)
	}
	return st[0]
}
