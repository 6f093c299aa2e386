package console

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/control"
	"github.com/glmctl/glmctl/internal/gpu"
	"github.com/glmctl/glmctl/internal/keys"
)

// fakeBackend is a stateful stand-in for the daemon: each program is a real
// child process (sleep), started, stopped and restarted for real; the keys
// come from a real keys file, read again on each call (as the guard's reload
// would); GPUs and the config status are whatever the test sets.
type fakeBackend struct {
	t          *testing.T
	keysFile   string
	limitsFile string

	mu        sync.Mutex
	order     []string
	progs     map[string]*fakeProg
	gpus      []gpu.Device
	gpuErr    error
	gpuMsg    string
	reloads   int
	reloadErr error
	cfg       control.ConfigStatus
	followers map[string][]chan string
	lastSet   *keys.Set
}

type fakeProg struct {
	state    string
	cmd      *exec.Cmd
	started  time.Time
	restarts int
	lastExit *int
	exited   chan struct{}
	stopping bool
	lines    []string
}

// newFakeBackend starts each named program (sleep 3600) and stops them all
// at cleanup, checking by PID that none is left.
func newFakeBackend(t *testing.T, keysFile, limitsFile string, programs ...string) *fakeBackend {
	t.Helper()
	b := &fakeBackend{t: t, keysFile: keysFile, limitsFile: limitsFile, progs: map[string]*fakeProg{},
		followers: map[string][]chan string{},
		cfg: control.ConfigStatus{Path: "/etc/glmctl/glmctl.hcl",
			SHA256: "4f1c0e4b5c2a9d7e8f60a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6e7", LoadedAt: time.Now().Add(-3 * time.Hour)}}
	for _, name := range programs {
		b.order = append(b.order, name)
		b.progs[name] = &fakeProg{state: "STOPPED"}
		if err := b.start(name); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		var pids []int
		for _, name := range b.order {
			if p := b.pid(name); p > 0 {
				pids = append(pids, p)
			}
			_ = b.stop(name)
		}
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				t.Errorf("stand-in program pid %d still alive after cleanup", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return b
}

func (b *fakeBackend) pid(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.progs[name]; p != nil && p.cmd != nil && p.cmd.Process != nil && p.state != "EXITED" && p.state != "STOPPED" {
		return p.cmd.Process.Pid
	}
	return 0
}

// backdate makes a running program look started d ago.
func (b *fakeBackend) backdate(name string, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.progs[name].started = time.Now().Add(-d)
}

func (b *fakeBackend) restarts(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.progs[name].restarts
}

func (b *fakeBackend) emit(name, line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.emitLocked(name, line)
}

func (b *fakeBackend) emitLocked(name, line string) {
	p := b.progs[name]
	p.lines = append(p.lines, line)
	for _, ch := range b.followers[name] {
		select {
		case ch <- line:
		default:
		}
	}
}

func (b *fakeBackend) start(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.progs[name]
	if p == nil {
		return fmt.Errorf("%w: %q", control.ErrNotFound, name)
	}
	if p.state == "RUNNING" {
		return nil
	}
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		p.state = "FATAL"
		return fmt.Errorf("start %q: %w", name, err)
	}
	p.cmd, p.state, p.started, p.stopping = cmd, "RUNNING", time.Now(), false
	p.exited = make(chan struct{})
	exited := p.exited
	go func() {
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		p.lastExit = &code
		if !p.stopping {
			p.state = "EXITED"
		}
		close(exited)
	}()
	b.emitLocked(name, fmt.Sprintf("INFO %s: started, pid %d", name, cmd.Process.Pid))
	return nil
}

func (b *fakeBackend) stop(name string) error {
	b.mu.Lock()
	p := b.progs[name]
	if p == nil {
		b.mu.Unlock()
		return fmt.Errorf("%w: %q", control.ErrNotFound, name)
	}
	if p.cmd == nil || p.state == "STOPPED" || p.state == "EXITED" {
		p.state = "STOPPED"
		b.mu.Unlock()
		return nil
	}
	p.stopping, p.state = true, "STOPPING"
	cmd, exited := p.cmd, p.exited
	b.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	b.mu.Lock()
	p.state = "STOPPED"
	b.emitLocked(name, fmt.Sprintf("INFO %s: stopped", name))
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) names(names []string) ([]string, error) {
	if slices.Contains(names, "all") {
		return slices.Clone(b.order), nil
	}
	for _, n := range names {
		if !slices.Contains(b.order, n) {
			return nil, fmt.Errorf("%w: %q", control.ErrNotFound, n)
		}
	}
	return names, nil
}

// Status implements control.Backend.
func (b *fakeBackend) Status(names ...string) (*control.StatusReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &control.StatusReply{GPUs: []control.GPUStatus{}, GPUMessage: b.gpuMsg}
	for _, name := range b.order {
		p := b.progs[name]
		ps := control.ProgramStatus{Name: name, State: p.state, Restarts: p.restarts, LastExit: p.lastExit, Health: "none"}
		if p.state == "RUNNING" {
			ps.PID = p.cmd.Process.Pid
			ps.UptimeSeconds = int64(time.Since(p.started).Seconds())
			ps.Health = "healthy"
		}
		r.Programs = append(r.Programs, ps)
	}
	r.Guard = &control.GuardStatus{Listen: "127.0.0.1:8000", Upstream: "unix:/run/glmctl/vllm/vllm.sock", Ready: b.progs[b.order[0]].state == "RUNNING",
		FilesOK: true, MaxConnections: 4096, OpenConnections: 3,
		Files: []control.FileStatus{{Path: b.keysFile, Entries: 3}, {Path: b.limitsFile, Entries: 2}}}
	cfg := b.cfg
	r.Config = &cfg
	return r, nil
}

// Start implements control.Backend.
func (b *fakeBackend) Start(_ context.Context, _ bool, names ...string) error {
	names, err := b.names(names)
	for _, n := range names {
		err = errors.Join(err, b.start(n))
	}
	return err
}

// Stop implements control.Backend.
func (b *fakeBackend) Stop(_ context.Context, _ bool, names ...string) error {
	names, err := b.names(names)
	for _, n := range names {
		err = errors.Join(err, b.stop(n))
	}
	return err
}

// Restart implements control.Backend: stop, start, one more restart.
func (b *fakeBackend) Restart(_ context.Context, _ bool, names ...string) error {
	names, err := b.names(names)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := b.stop(n); err != nil {
			return err
		}
		b.mu.Lock()
		b.progs[n].restarts++
		b.mu.Unlock()
		if err := b.start(n); err != nil {
			return err
		}
	}
	return nil
}

// Tail implements control.Backend.
func (b *fakeBackend) Tail(name string, n int) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.progs[name]
	if p == nil {
		return nil, fmt.Errorf("%w: %q", control.ErrNotFound, name)
	}
	lines := p.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return slices.Clone(lines), nil
}

// Follow implements control.Backend.
func (b *fakeBackend) Follow(ctx context.Context, name string) (<-chan string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.progs[name] == nil {
		return nil, fmt.Errorf("%w: %q", control.ErrNotFound, name)
	}
	in := make(chan string, 64)
	b.followers[name] = append(b.followers[name], in)
	out := make(chan string)
	go func() {
		defer close(out)
		defer func() {
			b.mu.Lock()
			b.followers[name] = slices.DeleteFunc(b.followers[name], func(c chan string) bool { return c == in })
			b.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case l := <-in:
				select {
				case out <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Reload implements control.Backend.
func (b *fakeBackend) Reload(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reloads++
	if b.reloadErr != nil {
		b.cfg.LastReloadError, b.cfg.LastReloadErrorAt = b.reloadErr.Error(), time.Now()
		return b.reloadErr
	}
	b.cfg.LoadedAt, b.cfg.LastReloadError = time.Now(), ""
	return nil
}

// AuditReopen implements control.Backend.
func (b *fakeBackend) AuditReopen() error { return nil }

// Keys reads the keys file as it is now; a file that does not parse keeps
// the previous set, as the guard does.
func (b *fakeBackend) Keys() *keys.Set {
	f, _, err := keys.ReadFile(b.keysFile)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.lastSet = keys.NewSet(f)
	}
	return b.lastSet
}

// GuardFiles implements Backend.
func (b *fakeBackend) GuardFiles() (string, string) { return b.keysFile, b.limitsFile }

// GPUs implements Backend.
func (b *fakeBackend) GPUs() ([]gpu.Device, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.gpus), b.gpuErr
}

// testKeys writes a keys file with an admin key "root", a user key "alice"
// and a second admin "ops", and a limits file; it returns the secrets.
func testKeys(t *testing.T, dir string) (keysFile, limitsFile string, secrets map[string]string) {
	t.Helper()
	keysFile = filepath.Join(dir, "api_keys.json")
	limitsFile = filepath.Join(dir, "rate_limits.json")
	secrets = map[string]string{}
	err := keys.Update(keysFile, true, func(f *keys.File) error {
		for _, k := range []struct{ name, role string }{{"root", keys.RoleAdmin}, {"alice", keys.RoleUser}, {"ops", keys.RoleAdmin}} {
			s, err := keys.NewSecret()
			if err != nil {
				return err
			}
			secrets[k.name] = s
			if err := f.Add(&keys.Entry{Name: k.name, SHA256: keys.Hash(s), Role: k.role, Created: time.Now().UTC().Truncate(time.Second)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	limits := `{"rate_limits": {
  # the tutorial's format
  "default": {"rpm": 60, "tpm": 60000},
  "alice":   {"rpm": 120, "tpm": 120000, "concurrency": 8}
}}`
	if err := os.WriteFile(limitsFile, []byte(limits), 0o600); err != nil {
		t.Fatal(err)
	}
	return keysFile, limitsFile, secrets
}
