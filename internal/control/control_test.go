package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend records calls; the transport under test is real (unix socket, HTTP).
type fakeBackend struct {
	mu      sync.Mutex
	calls   []string
	lines   chan string
	reopens int
}

func (f *fakeBackend) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeBackend) Status(names ...string) (*StatusReply, error) {
	for _, n := range names {
		if n == "nope" {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, n)
		}
	}
	code := 0
	return &StatusReply{Programs: []ProgramStatus{{Name: "vllm", State: "RUNNING", PID: 42, Health: "healthy", LastExit: &code}}, GPUs: []GPUStatus{}}, nil
}
func (f *fakeBackend) Start(_ context.Context, wait bool, names ...string) error {
	f.record(fmt.Sprintf("start %v %v", wait, names))
	return nil
}
func (f *fakeBackend) Stop(_ context.Context, wait bool, names ...string) error {
	f.record(fmt.Sprintf("stop %v %v", wait, names))
	return errors.New("stop failed: timeout")
}
func (f *fakeBackend) Restart(_ context.Context, wait bool, names ...string) error {
	f.record(fmt.Sprintf("restart %v %v", wait, names))
	return nil
}
func (f *fakeBackend) Tail(name string, n int) ([]string, error) {
	return []string{"one", "two"}, nil
}
func (f *fakeBackend) Follow(ctx context.Context, name string) (<-chan string, error) {
	return f.lines, nil
}
func (f *fakeBackend) Reload(context.Context) error { f.record("reload"); return nil }
func (f *fakeBackend) AuditReopen() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reopens++
	return nil
}

func startServer(t *testing.T, b Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "glmctl.sock")
	s := NewServer(path, b, nil)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return path
}

func TestSocketModeAndSecondDaemon(t *testing.T) {
	path := startServer(t, &fakeBackend{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode = %o, want 600", got)
	}
	dir, _ := os.Stat(filepath.Dir(path))
	if got := dir.Mode().Perm(); got != 0o700 {
		t.Errorf("socket dir mode = %o, want 700", got)
	}
	err = NewServer(path, &fakeBackend{}, nil).Listen()
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Listen = %v, want already running", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "glmctl.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // leaves the file behind, nobody listening
	s := NewServer(path, &fakeBackend{}, nil)
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	s.ln.Close()
}

func TestClientCalls(t *testing.T) {
	fb := &fakeBackend{lines: make(chan string, 2)}
	path := startServer(t, fb)
	c := NewClient(path)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Programs[0].Name+" "+st.Programs[0].State, "vllm RUNNING"; got != want {
		t.Errorf("status = %q, want %q", got, want)
	}
	_, err = c.Status(ctx, "nope")
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != 404 {
		t.Errorf("status nope = %v, want 404 RemoteError", err)
	}
	if err := c.Action(ctx, "start", true, "vllm", "ui"); err != nil {
		t.Fatal(err)
	}
	if err := c.Action(ctx, "stop", false, "all"); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("stop = %v, want the backend's error", err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.AuditReopen(ctx); err != nil {
		t.Fatal(err)
	}
	fb.mu.Lock()
	got := strings.Join(fb.calls, "; ")
	reopens := fb.reopens
	fb.mu.Unlock()
	if want := "start true [vllm ui]; stop false [all]; reload"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if reopens != 1 {
		t.Errorf("reopens = %d, want 1", reopens)
	}

	var buf bytes.Buffer
	if err := c.Logs(ctx, &buf, "vllm", 2, false); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "one\ntwo\n"; got != want {
		t.Errorf("logs = %q, want %q", got, want)
	}

	// Follow: tail, then streamed lines, until the backend closes the channel.
	fb.lines <- "three"
	close(fb.lines)
	buf.Reset()
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Logs(fctx, &buf, "vllm", 2, true); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "one\ntwo\nthree\n"; got != want {
		t.Errorf("follow = %q, want %q", got, want)
	}
}

func TestUnreachable(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}
