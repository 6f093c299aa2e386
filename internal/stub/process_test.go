package stub

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/testutil"
)

// helper is a stand-in running as a real process (the test binary re-exec'd
// by TestMain).
type helper struct {
	cmd    *exec.Cmd
	addr   string
	log    *testutil.SyncBuffer
	waited chan error
	read   chan struct{} // closed when stderr reached EOF
}

// logs returns the helper's stderr, complete once every writer has closed
// it (waits up to 2 s for that).
func (h *helper) logs() string {
	select {
	case <-h.read:
	case <-time.After(2 * time.Second):
	}
	return h.log.String()
}

var servingLine = regexp.MustCompile(`serving: .*addr=(\S+)`)

// mustStartHelper starts `kind` with args and waits for its "serving" log
// line, which names the address (port 0 resolved).
func mustStartHelper(tb testing.TB, kind string, env []string, args ...string) *helper {
	tb.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "STUB_TEST_HELPER="+kind), env...)
	// Our own pipe, so Wait does not wait for its end: children that
	// outlive the helper (orphans) keep the write end open.
	stderr, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = w
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		_ = stderr.Close()
		tb.Fatal(err)
	}
	h := &helper{cmd: cmd, log: &testutil.SyncBuffer{}, waited: make(chan error, 1), read: make(chan struct{})}
	go func() { h.waited <- cmd.Wait() }()
	found := make(chan string, 1)
	go func() {
		defer close(h.read)
		defer stderr.Close()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = h.log.Write([]byte(line + "\n"))
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(h.log, stderr)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-h.waited
	})
	select {
	case h.addr = <-found:
	case err := <-h.waited:
		h.waited <- err
		tb.Fatalf("%s exited before serving: %v\n%s", kind, err, h.log.String())
	case <-time.After(10 * time.Second):
		tb.Fatalf("%s did not start serving:\n%s", kind, h.log.String())
	}
	return h
}

// wait returns the exit code once the helper exits (-1 when killed by a
// signal), failing after the deadline.
func (h *helper) wait(tb testing.TB, within time.Duration) int {
	tb.Helper()
	select {
	case err := <-h.waited:
		h.waited <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			tb.Fatalf("wait: %v", err)
		}
		return 0
	case <-time.After(within):
		tb.Fatalf("helper still running after %s", within)
		return 0
	}
}

// unixGet GETs path over the unix socket sock.
func unixGet(sock, path string) (int, error) {
	c := httpClient(&VLLM{addr: unixAddr(sock)})
	resp, err := c.Get("http://localhost" + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestProcessSIGTERM(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vllm.sock")
	const key = "sk-secret-never-logged-123"
	h := mustStartHelper(t, "vllm", []string{"VLLM_API_KEY=" + key}, "--uds", sock, "--model", "m")
	if code, err := unixGet(sock, "/health"); err != nil || code != 200 {
		t.Fatalf("health: %d %v", code, err)
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM %d, want 0", code)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
	if logs := h.logs(); strings.Contains(logs, key) {
		t.Errorf("API key in the log:\n%s", logs)
	}
}

// TestProcessIgnoreTerm: with --ignore-term only SIGKILL stops it (for the
// launcher's stop escalation).
func TestProcessIgnoreTerm(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vllm.sock")
	h := mustStartHelper(t, "vllm", nil, "--uds", sock, "--ignore-term")
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Observe a bounded window: it must keep serving through it.
	until := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(until) {
		if code, err := unixGet(sock, "/health"); err != nil || code != 200 {
			t.Fatalf("after SIGTERM with --ignore-term: %d %v", code, err)
		}
		select {
		case err := <-h.waited:
			t.Fatalf("exited on SIGTERM: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := h.wait(t, 10*time.Second); code != -1 {
		t.Errorf("exit code %d, want -1 (killed)", code)
	}
}

// TestProcessExitAfter: the crash simulation exits with --exit-code and
// leaves its socket file behind, like a real crash.
func TestProcessExitAfter(t *testing.T) {
	for _, code := range []int{0, 3} {
		sock := filepath.Join(t.TempDir(), "vllm.sock")
		h := mustStartHelper(t, "vllm", nil, "--uds", sock, "--exit-after", "300ms", "--exit-code", strconv.Itoa(code))
		if got := h.wait(t, 10*time.Second); got != code {
			t.Errorf("exit code %d, want %d", got, code)
		}
		if _, err := os.Lstat(sock); err != nil {
			t.Errorf("socket gone after a crash: %v", err)
		}
	}
}

// TestProcessWebUIKeyFromEnv: the web UI command takes $OPENAI_API_KEY and
// relays to a stand-in vLLM that requires it.
func TestProcessWebUIKeyFromEnv(t *testing.T) {
	const key = "sk-env-key-456"
	v := mustStartVLLM(t, VLLMOptions{APIKey: key})
	h := mustStartHelper(t, "webui", []string{"OPENAI_API_KEY=" + key, "OPENAI_API_KEY_FILE="},
		"--listen", "127.0.0.1:0", "--api-base", rootURL(v)+"/v1")
	resp, err := http.Post("http://"+h.addr+"/api/chat", "application/json", strings.NewReader(`{"message":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), ReplyText(DefaultReplyTokens)) {
		t.Errorf("chat: %d %s", resp.StatusCode, body)
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if logs := h.logs(); strings.Contains(logs, key) {
		t.Errorf("API key in the log:\n%s", logs)
	}
}
