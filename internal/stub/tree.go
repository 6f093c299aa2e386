package stub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// vLLM's process tree is API server → VLLM::EngineCore → VLLM::Worker_TP*.
// With Workers > 0 the stand-in builds the same tree by re-executing its own
// binary with the same arguments and these variables set; the command's
// action (VLLMCommand) sees them and runs the role instead of a server.
const (
	roleEnv    = "GLMCTL_STUB_ROLE"
	workersEnv = "GLMCTL_STUB_WORKERS"
)

// engineProc is the running engine child of a server.
type engineProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the engine has exited and been reaped
}

// spawnSelf re-executes the running binary as argv0 with the same
// arguments and extra environment; the child shares stdout, stderr and the
// process group, and is not tied to its parent's life (no Pdeathsig), like
// vLLM's children.
func spawnSelf(argv0 string, env ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := &exec.Cmd{
		Path:   exe,
		Args:   append([]string{argv0}, os.Args[1:]...),
		Env:    append(os.Environ(), env...),
		Stdout: os.Stdout,
		Stderr: os.Stderr,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv0, err)
	}
	return cmd, nil
}

// startEngine spawns the engine, which spawns the workers.
func (v *VLLM) startEngine() (*engineProc, error) {
	cmd, err := spawnSelf("VLLM::EngineCore", roleEnv+"=engine", workersEnv+"="+strconv.Itoa(v.opts.Workers))
	if err != nil {
		return nil, err
	}
	e := &engineProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(e.done)
	}()
	v.log.Info("engine core started", "pid", cmd.Process.Pid, "workers", v.opts.Workers)
	return e, nil
}

// stop asks the engine to shut down (SIGTERM; it stops its workers), and
// kills it after timeout. Safe on a nil or exited engine.
func (e *engineProc) stop(timeout time.Duration) {
	if e == nil {
		return
	}
	select {
	case <-e.done:
		return
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.done:
	case <-t.C:
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// exited is closed when the engine exits; nil (never) without an engine.
func (e *engineProc) exited() <-chan struct{} {
	if e == nil {
		return nil
	}
	return e.done
}

// childRole reports whether this process is a re-executed engine or worker.
func childRole() string { return os.Getenv(roleEnv) }

// runChild runs the engine or worker role until SIGTERM or SIGINT. The
// engine starts its workers and stops them (SIGTERM, then SIGKILL after
// 5 s) before it exits; neither dies with its parent.
func runChild(parent context.Context, role string, log hclog.Logger) error {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch role {
	case "worker":
		<-ctx.Done()
		return nil
	case "engine":
	default:
		return fmt.Errorf("unknown stand-in role %q", role)
	}
	n, err := strconv.Atoi(os.Getenv(workersEnv))
	if err != nil || n < 0 {
		return fmt.Errorf("bad %s: %q", workersEnv, os.Getenv(workersEnv))
	}
	log = log.Named("engine")
	workers := make([]*exec.Cmd, 0, n)
	reaped := make(chan struct{}, n)
	var errs []error
	for i := range n {
		cmd, err := spawnSelf("VLLM::Worker_TP"+strconv.Itoa(i), roleEnv+"=worker")
		if err != nil {
			errs = append(errs, err)
			break
		}
		workers = append(workers, cmd)
		go func() {
			_ = cmd.Wait()
			reaped <- struct{}{}
		}()
		log.Info("worker started", "pid", cmd.Process.Pid, "rank", i)
	}
	if len(errs) == 0 {
		<-ctx.Done()
	}
	for _, w := range workers {
		_ = w.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for range workers {
		select {
		case <-reaped:
		case <-deadline.C:
			for _, w := range workers {
				_ = w.Process.Kill()
			}
			<-reaped
		}
	}
	return errors.Join(errs...)
}
