package stub

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// staleSocket leaves a socket file nobody listens on, as a crash does.
func staleSocket(tb testing.TB, path string) {
	tb.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		tb.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	_ = ln.Close()
	if _, err := os.Lstat(path); err != nil {
		tb.Fatalf("stale socket not left: %v", err)
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vllm.sock")
	staleSocket(t, path)
	v := mustStartVLLM(t, VLLMOptions{UDS: path})
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != DefaultSocketMode {
		t.Errorf("socket mode %v, want socket %o", fi.Mode(), DefaultSocketMode)
	}
	client := newClient(v)
	got, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model: DefaultModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("over a unix socket")}})
	if err != nil {
		t.Fatalf("chat over unix socket: %v", err)
	}
	if got.Choices[0].Message.Content != ReplyText(DefaultReplyTokens) {
		t.Errorf("content %q", got.Choices[0].Message.Content)
	}

	t.Run("live socket is not taken over", func(t *testing.T) {
		err := NewVLLM(VLLMOptions{UDS: path}).Run(t.Context())
		if err == nil || !strings.Contains(err.Error(), "another server is listening") {
			t.Errorf("second server on a live socket: %v", err)
		}
	})
	t.Run("regular file is not removed", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "not-a-socket")
		if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := NewVLLM(VLLMOptions{UDS: file}).Run(t.Context())
		if err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("server on a regular file: %v", err)
		}
		if b, _ := os.ReadFile(file); string(b) != "keep me" {
			t.Errorf("file clobbered")
		}
	})
}

func TestUnixSocketRemovedOnStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vllm.sock")
	v := NewVLLM(VLLMOptions{UDS: path})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	<-v.Ready()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after a clean stop: %v", err)
	}
}

// TestSlowStart: during LoadTime the address is bound but connections are
// refused (as probes see while vLLM loads weights); then it serves.
func TestSlowStart(t *testing.T) {
	const load = 400 * time.Millisecond
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			opts := VLLMOptions{Listen: "127.0.0.1:0", LoadTime: load}
			if network == "unix" {
				opts.UDS = filepath.Join(t.TempDir(), "vllm.sock")
			}
			v := NewVLLM(opts)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- v.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			select {
			case <-v.Bound():
			case <-time.After(5 * time.Second):
				t.Fatal("not bound")
			}
			addr := v.Addr()
			_, err := net.Dial(addr.Network(), addr.String())
			if time.Since(start) < load && !isRefused(err) {
				t.Fatalf("dial during load: %v, want connection refused", err)
			}
			var served time.Duration
			waitFor(t, 5*time.Second, "the server to accept", func() bool {
				resp, err := httpClient(v).Get(rootURL(v) + "/health")
				if err != nil {
					if !isRefused(err) {
						t.Fatalf("health during load: %v, want connection refused", err)
					}
					return false
				}
				resp.Body.Close()
				served = time.Since(start)
				return resp.StatusCode == http.StatusOK
			})
			if served < load {
				t.Errorf("served after %s, before the %s load time", served, load)
			}
		})
	}
}

// TestStopDuringLoad: a stop while loading returns promptly and frees the
// address.
func TestStopDuringLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vllm.sock")
	v := NewVLLM(VLLMOptions{UDS: path, LoadTime: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	<-v.Bound()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stop during load hung")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left: %v", err)
	}
}

// TestShutdownGraceful: a stop lets a running non-streamed request finish.
func TestShutdownGraceful(t *testing.T) {
	v := NewVLLM(VLLMOptions{Listen: "127.0.0.1:0", TTFT: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	<-v.Ready()
	got := make(chan int, 1)
	go func() {
		resp, err := http.Post(rootURL(v)+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"x"}`))
		if err != nil {
			got <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	waitFor(t, 5*time.Second, "the request to run", func() bool { return v.Stats().Running == 1 })
	cancel()
	if code := <-got; code != http.StatusOK {
		t.Errorf("in-flight request during stop: %d, want 200", code)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", v.Addr().String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after stop: %v, want refused", err)
	}
}
