package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/guard"
)

// Issue 10: what glmctl says is in force is in force.

const inForceKey = "sk-inforce-0123456789abcdefghijklmnop"

// guardConfig is a config with a guard in front of upstream; extra goes
// into the guard block.
func guardConfig(dir, listen, upstream, extra string) string {
	return fmt.Sprintf(`
control { socket = "%[1]s/glmctl.sock" }
guard {
  listen    = "%[2]s"
  upstream  = "%[3]s"
  keys_file = "%[1]s/api_keys.json"
  %[4]s
}
`, dir, listen, upstream, extra)
}

// guardDaemon runs a daemon whose config source can be changed by the test;
// reloads re-parse it.
type guardDaemon struct {
	d    *Daemon
	dir  string
	url  string
	mu   sync.Mutex
	src  string
	path string
}

func (g *guardDaemon) setSource(s string) {
	g.mu.Lock()
	g.src = s
	g.mu.Unlock()
}

func startGuardDaemon(t *testing.T, src func(dir string) string) *guardDaemon {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "api_keys.json"),
		[]byte(`{"api_keys": {"u": {"sha256": "`+keys.Hash(inForceKey)+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &guardDaemon{dir: dir, src: src(dir), path: filepath.Join(dir, "glmctl.hcl")}
	first := mustParse(t, g.src, dir)
	first.Path = g.path
	d, err := New(first, Options{Reload: func() (*config.Config, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		cfg, err := config.Parse([]byte(g.src), g.path)
		if cfg != nil {
			cfg.Path = g.path
		}
		return cfg, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	g.d = d
	runDaemon(t, d)
	waitFor(t, 10*time.Second, "guard listening", func() bool { return d.guard.Addr() != nil })
	g.url = "http://" + d.guard.Addr().String()
	return g
}

func newModelsUpstream(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"m","object":"model"}]}`)
	}))
	t.Cleanup(up.Close)
	return up.URL
}

// burst sends n GET /v1/models at once and counts the statuses.
func burst(t *testing.T, url string, n int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, url+"/v1/models", nil)
			req.Header.Set("Authorization", "Bearer "+inForceKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			got[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

// TestReloadAppliesGuardSettings: a global limit added by `glmctl reload` is
// in force at once.
func TestReloadAppliesGuardSettings(t *testing.T) {
	up := newModelsUpstream(t)
	g := startGuardDaemon(t, func(dir string) string { return guardConfig(dir, "127.0.0.1:0", up, "") })
	if got := burst(t, g.url, 10); got[200] != 10 {
		t.Fatalf("before the reload: %v", got)
	}
	g.setSource(guardConfig(g.dir, "127.0.0.1:0", up, "global {\n    rpm = 5\n  }"))
	if err := g.d.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	got := burst(t, g.url, 40)
	if got[200] != 5 || got[429] != 35 {
		t.Fatalf("after adding global rpm = 5: %v, want 5×200 and 35×429", got)
	}
}

// TestReloadRefusesRestartOnlySettings: a reload that changes the listen
// address fails, naming it, and applies nothing else of the file.
func TestReloadRefusesRestartOnlySettings(t *testing.T) {
	up := newModelsUpstream(t)
	g := startGuardDaemon(t, func(dir string) string { return guardConfig(dir, "127.0.0.1:0", up, "") })
	before := g.d.configStatus()
	g.setSource(guardConfig(g.dir, "127.0.0.1:1", up, "global {\n    rpm = 1\n  }") + "\naudit { path = \"" + g.dir + "/a.log\" }\n")
	err := g.d.Reload(context.Background())
	if !errors.Is(err, guard.ErrRestartRequired) || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("reload error = %v, want a restart-required error naming audit", err)
	}
	g.setSource(guardConfig(g.dir, "127.0.0.1:1", up, "global {\n    rpm = 1\n  }"))
	err = g.d.Reload(context.Background())
	if !errors.Is(err, guard.ErrRestartRequired) || !strings.Contains(err.Error(), "guard.listen") {
		t.Fatalf("reload error = %v, want a restart-required error naming guard.listen", err)
	}
	if got := burst(t, g.url, 5); got[200] != 5 {
		t.Fatalf("the rejected reload's rpm = 1 is in force: %v", got)
	}
	st := g.d.configStatus()
	if st.SHA256 != before.SHA256 || !st.LoadedAt.Equal(before.LoadedAt) {
		t.Fatalf("config in force changed: %+v → %+v", before, st)
	}
	if !strings.Contains(st.LastReloadError, "guard.listen") || st.LastReloadErrorAt.IsZero() {
		t.Fatalf("status does not show the rejected reload: %+v", st)
	}
	if v := testutil.ToFloat64(g.d.reloads.OK(g.path)); v != 0 {
		t.Fatalf("glmctl_config_last_reload_successful = %v after a rejected reload", v)
	}
	g.setSource(guardConfig(g.dir, "127.0.0.1:0", up, ""))
	if err := g.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(g.d.reloads.OK(g.path)); v != 1 || g.d.configStatus().LastReloadError != "" {
		t.Fatalf("after a good reload: metric %v, status %+v", v, g.d.configStatus())
	}
}

// TestBrokenKeysFileShown: a keys file that fails to load shows in status
// (and the metric), and both recover when the last good content is back.
func TestBrokenKeysFileShown(t *testing.T) {
	up := newModelsUpstream(t)
	g := startGuardDaemon(t, func(dir string) string { return guardConfig(dir, "127.0.0.1:0", up, "") })
	keysPath := filepath.Join(g.dir, "api_keys.json")
	good, err := os.ReadFile(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{d: g.d}
	filesOK := func() (bool, string) {
		st, err := b.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range st.Guard.Files {
			if f.Error != "" {
				return st.Guard.FilesOK, f.Error
			}
		}
		return st.Guard.FilesOK, ""
	}
	writeAtomic(t, keysPath, `{"api_keys": {"u": {"sha256": 12}}}`)
	waitFor(t, 10*time.Second, "broken keys file shown", func() bool {
		ok, msg := filesOK()
		return !ok && strings.Contains(msg, "1:")
	})
	if v := testutil.ToFloat64(g.d.reloads.OK(keysPath)); v != 0 {
		t.Fatalf("reload metric %v while broken", v)
	}
	writeAtomic(t, keysPath, string(good))
	waitFor(t, 10*time.Second, "keys file back to good", func() bool {
		ok, _ := filesOK()
		return ok && testutil.ToFloat64(g.d.reloads.OK(keysPath)) == 1
	})
	if got := burst(t, g.url, 1); got[200] != 1 {
		t.Fatalf("key refused after the restore: %v", got)
	}
}

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestReadyAfterListeners: READY=1 is sent only once the guard answers: a
// fake NOTIFY_SOCKET connects to the guard port the moment READY arrives.
func TestReadyAfterListeners(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	port := freePort(t)
	up := newModelsUpstream(t)
	listen := "127.0.0.1:" + port
	result := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := nc.ReadFromUnix(buf)
			if err != nil {
				result <- err
				return
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				resp, err := http.Get("http://" + listen + "/health")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("health: %s", resp.Status)
					}
				}
				result <- err
				return
			}
		}
	}()
	startGuardDaemon(t, func(dir string) string { return guardConfig(dir, listen, up, "") })
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("guard not answering when READY=1 arrived: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no READY=1")
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestConsoleServed: a console block gives a web console on its own
// listener, bound before READY, sign-in first.
func TestConsoleServed(t *testing.T) {
	up := newModelsUpstream(t)
	g := startGuardDaemon(t, func(dir string) string {
		return guardConfig(dir, "127.0.0.1:0", up, "") + "\nconsole {\n  listen = \"127.0.0.1:0\"\n}\n"
	})
	if g.d.console == nil || g.d.console.Addr() == nil {
		t.Fatal("no console listening")
	}
	resp, err := http.Get("http://" + g.d.console.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("console: %d", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src") {
		t.Fatalf("no CSP on the console: %q", csp)
	}
	if !strings.Contains(strings.ToLower(string(body)), "sign in") {
		t.Fatalf("the console did not ask to sign in:\n%s", body)
	}
}
