package daemon

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/glmctl/glmctl/pkg/launcher"
)

const xidConfig = `
control { socket = "%s/glmctl.sock" }
gpu {
  required       = false
  restart_on_xid = %t
}
program "p" {
  command    = ["/bin/sh", "-c", "exec sleep 600"]
  gpus       = [0]
  start_secs = "100ms"
}
program "q" {
  command    = ["/bin/sh", "-c", "exec sleep 600"]
  gpus       = [1]
  start_secs = "100ms"
}
`

// runXIDDaemon runs a daemon whose programs p and q use GPUs 0 and 1 (NVML
// is absent here: gpu.required = false lets them start).
func runXIDDaemon(t *testing.T, restart bool) (*Daemon, context.Context) {
	t.Helper()
	dir := t.TempDir()
	d, err := New(mustParse(t, fmt.Sprintf(xidConfig, dir, restart), dir), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := runDaemon(t, d)
	for _, n := range []string{"p", "q"} {
		waitFor(t, 20*time.Second, n+" RUNNING", func() bool { return pidOf(t, d, n) > 0 })
	}
	return d, ctx
}

// pidOf is the program's PID while it is RUNNING, else 0.
func pidOf(t *testing.T, d *Daemon, name string) int {
	t.Helper()
	st, err := d.sup.Status(name)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].State != launcher.StateRunning {
		return 0
	}
	return st[0].PID
}

func TestXIDRestartsProgramsOnThatGPU(t *testing.T) {
	d, ctx := runXIDDaemon(t, true)
	p0, q0 := pidOf(t, d, "p"), pidOf(t, d, "q")
	h := d.onXID(ctx)
	for range 3 { // a burst: one restart
		h(0, "GPU-0", 79)
	}
	d.xidRestarts.Wait()
	if p := pidOf(t, d, "p"); p == 0 || p == p0 {
		t.Errorf("p after an XID on its GPU: pid %d (was %d), want RUNNING with a new pid", p, p0)
	}
	if q := pidOf(t, d, "q"); q != q0 {
		t.Errorf("q (GPU 1) was touched by an XID on GPU 0: pid %d, was %d", q, q0)
	}
	h(7, "GPU-7", 79) // no program uses GPU 7
	d.xidRestarts.Wait()
	if q := pidOf(t, d, "q"); q != q0 {
		t.Errorf("q was touched by an XID on an unused GPU")
	}
}

func TestXIDWithoutRestartOnXID(t *testing.T) {
	d, ctx := runXIDDaemon(t, false)
	p0 := pidOf(t, d, "p")
	d.onXID(ctx)(0, "GPU-0", 79)
	d.xidRestarts.Wait()
	if p := pidOf(t, d, "p"); p != p0 {
		t.Errorf("p restarted (pid %d -> %d) with restart_on_xid = false", p0, p)
	}
}
