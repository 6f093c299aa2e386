package control

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ctxFollowBackend ends its follow streams with their context, as the
// daemon's does.
type ctxFollowBackend struct {
	fakeBackend
	following chan struct{}
}

func (b *ctxFollowBackend) Follow(ctx context.Context, _ string) (<-chan string, error) {
	ch := make(chan string)
	close(b.following)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

// TestRunCutsOffFollowers: a `glmctl logs -f` still connected when the
// daemon stops does not keep Run (or its handler) alive.
func TestRunCutsOffFollowers(t *testing.T) {
	b := &ctxFollowBackend{following: make(chan struct{})}
	path := filepath.Join(t.TempDir(), "glmctl.sock")
	s := NewServer(path, b, nil)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	logsDone := make(chan error, 1)
	go func() {
		logsDone <- NewClient(path).Logs(context.Background(), io.Discard, "vllm", 10, true)
	}()
	select {
	case <-b.following:
	case <-time.After(20 * time.Second):
		t.Fatal("follow request never reached the backend")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return with a follower connected")
	}
	select {
	case <-logsDone:
	case <-time.After(20 * time.Second):
		t.Fatal("the follower was not disconnected")
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("socket left behind after Run")
	}
}

// TestListenLeavesNoTemporaryFiles: the socket is bound under a private
// name and renamed; nothing else stays in its directory.
func TestListenLeavesNoTemporaryFiles(t *testing.T) {
	path := startServer(t, &fakeBackend{})
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "glmctl.sock" {
		t.Errorf("socket directory holds %v, want only glmctl.sock", names)
	}
}

// TestPermissionDeniedSaysWhy: a user who may not open the 0600 socket is
// told so, not asked whether the daemon runs.
func TestPermissionDeniedSaysWhy(t *testing.T) {
	c := NewClient("/run/glmctl/glmctl.sock")
	err := c.dialErr(&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "is `glmctl up` running") {
		t.Errorf("dialErr(EACCES) = %v", err)
	}
	err = c.dialErr(&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "is `glmctl up` running") {
		t.Errorf("dialErr(ECONNREFUSED) = %v", err)
	}
}
