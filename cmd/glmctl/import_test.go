package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
)

const tutorialDir = "../../testdata/tutorial"

// absTutorial is the absolute path of a tutorial file: what import writes
// into the config for a relative --limits-file (configs want absolute paths).
func absTutorial(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(tutorialDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// importTutorial runs `glmctl import supervisor` on the tutorial's files
// into a new directory and returns it and the result.
func importTutorial(t *testing.T) (dir string, r result) {
	t.Helper()
	dir = t.TempDir()
	r = glmctl(t, "import", "supervisor", filepath.Join(tutorialDir, "glm47flash.conf"), "-o", filepath.Join(dir, "glmctl.hcl"),
		"--keys-from", filepath.Join(tutorialDir, "api_keys.json"),
		"--limits-file", filepath.Join(tutorialDir, "rate_limits.json"),
		"--logrotate-dir", tutorialDir)
	if r.code != 0 {
		t.Fatalf("import: exit %d\n%s", r.code, r.stderr)
	}
	return dir, r
}

func TestImportTutorial(t *testing.T) {
	dir, r := importTutorial(t)
	got, err := os.ReadFile(filepath.Join(dir, "glmctl.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../testdata/import/glm47flash.hcl")
	if err != nil {
		t.Fatal(err)
	}
	// The golden file (internal/migrate's) was made with /srv/glmctl-import as the
	// output directory and the tutorial's limits path.
	norm := strings.ReplaceAll(string(got), dir, "/srv/glmctl-import")
	norm = strings.ReplaceAll(norm, absTutorial(t, "rate_limits.json"), "/etc/vllm/rate_limits.json")
	_, gotBody, _ := strings.Cut(norm, "\n")
	_, wantBody, _ := strings.Cut(string(want), "\n")
	if gotBody != wantBody {
		t.Errorf("import output differs from testdata/import/glm47flash.hcl:\n%s", norm)
	}
	for _, n := range []string{"placeholder", "copytruncate", "nginx", "ui.key"} {
		if !strings.Contains(r.stderr, n) {
			t.Errorf("no note about %s on stderr:\n%s", n, r.stderr)
		}
	}
	if r.stdout != "" {
		t.Errorf("stdout with -o: %q", r.stdout)
	}
	// New keys file and UI key: 0600, hashed only, every key opens.
	kf := filepath.Join(dir, "api_keys.json")
	for _, p := range []string{kf, filepath.Join(dir, "ui.key")} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", p, err, st)
		}
	}
	raw, _ := os.ReadFile(kf)
	if strings.Contains(string(raw), "sk-") {
		t.Errorf("clear text in the new keys file:\n%s", raw)
	}
	ui, _ := os.ReadFile(filepath.Join(dir, "ui.key"))
	f, _, err := keys.ReadFile(kf)
	if err != nil {
		t.Fatal(err)
	}
	set := keys.NewSet(f)
	if _, err := set.Lookup("sk-your-secure-api-key-here", time.Now()); !errors.Is(err, keys.ErrDisabled) {
		t.Errorf("the tutorial's placeholder --api-key must be imported disabled, lookup gave %v", err)
	}
	for secret, name := range map[string]string{
		"sk-abc123def456ghi789jkl012mno345pqr": "user1",
		strings.TrimSpace(string(ui)):          "glm_ui-service",
	} {
		if k, err := set.Lookup(secret, time.Now()); err != nil || k.Name != name {
			t.Errorf("lookup %s: %v %v", name, k, err)
		}
	}
	if _, err := config.Load(filepath.Join(dir, "glmctl.hcl")); err != nil {
		t.Errorf("converted config does not load: %v", err)
	}
	// The tutorial's files are left as they were.
	for _, n := range []string{"api_keys.json", "rate_limits.json", "glm47flash.conf"} {
		a, _ := os.ReadFile(filepath.Join(tutorialDir, n))
		b, _ := os.ReadFile(filepath.Join("/work/shared/tutorial", n))
		if b != nil && string(a) != string(b) {
			t.Errorf("testdata/tutorial/%s differs from the tutorial's", n)
		}
	}
}

func TestImportToStdoutAndRefusals(t *testing.T) {
	dir := t.TempDir()
	conf, err := filepath.Abs(filepath.Join(tutorialDir, "glm47flash.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// Without -o: HCL on stdout, key files in the current directory.
	cmdDir := t.TempDir()
	t.Chdir(cmdDir)
	r := glmctl(t, "import", "supervisor", conf, "--keys-from", filepath.Join(dir, "none.json"), "--logrotate-dir", dir)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "# glmctl configuration converted") || !strings.Contains(r.stderr, "none.json not found") {
		t.Fatalf("import to stdout: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(cmdDir, "api_keys.json")); err != nil {
		t.Errorf("keys file not in the current directory: %v", err)
	}
	// Never over existing files, the config in use, /etc/glmctl or /etc/vllm.
	if r := glmctl(t, "import", "supervisor", conf); r.code != 1 || !strings.Contains(r.stderr, "refusing to overwrite") {
		t.Errorf("second import into the same dir: exit %d %q", r.code, r.stderr)
	}
	cfg := filepath.Join(dir, "glmctl.hcl")
	if err := os.WriteFile(cfg, []byte("log { level = \"info\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := glmctl(t, "import", "supervisor", conf, "-o", cfg, "-c", cfg); r.code != 1 || !strings.Contains(r.stderr, "refusing") {
		t.Errorf("-o the running config: exit %d %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(cfg); string(got) != "log { level = \"info\" }\n" {
		t.Error("the config in use was overwritten")
	}
	for _, out := range []string{"/etc/glmctl/glmctl.hcl", "/etc/vllm/glmctl.hcl"} {
		if r := glmctl(t, "import", "supervisor", conf, "-o", out); r.code != 1 || !strings.Contains(r.stderr, "never writes under") {
			t.Errorf("-o %s: exit %d %q", out, r.code, r.stderr)
		}
	}
	if r := glmctl(t, "import", "supervisor", filepath.Join(dir, "missing.conf"), "-o", filepath.Join(dir, "x", "o.hcl")); r.code != 1 {
		t.Errorf("missing input: exit %d", r.code)
	}
}

// TestImportedConfigRuns starts `glmctl up` on the imported config with
// the real paths moved to a temporary directory, the stand-in in place of
// vLLM and the web UI, and talks to the guard with a tutorial key.
func TestImportedConfigRuns(t *testing.T) {
	dir, _ := importTutorial(t)
	src, err := os.ReadFile(filepath.Join(dir, "glmctl.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	guardPort, uiPort, metricsPort := freePort(t), freePort(t), freePort(t)
	sock := filepath.Join(dir, "vllm.sock")
	limitsCopy := filepath.Join(dir, "rate_limits.json")
	limits, err := os.ReadFile(filepath.Join(tutorialDir, "rate_limits.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(limitsCopy, limits, 0o600); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(src), "\n") {
		switch {
		case strings.Contains(l, "--tensor-parallel-size"), strings.Contains(l, "--max-num-"), strings.Contains(l, "gpus = "):
			continue // the stand-in has no such flags; no GPUs here
		case strings.Contains(l, `"vllm.entrypoints.openai.api_server"`):
			l = `    glmctl_bin, "stub", "vllm", "--load-time", "300ms",`
		case strings.Contains(l, `"/root/workspace/webui.py"`):
			l = `    glmctl_bin, "stub", "webui",`
		case strings.Contains(l, `"--port", "7860"`):
			l = fmt.Sprintf(`    "--port", "%d",`, uiPort)
		}
		lines = append(lines, l)
	}
	cfgText := strings.Join(lines, "\n")
	for _, ft := range [][2]string{
		{"/run/glmctl/vllm.sock", sock},
		{absTutorial(t, "rate_limits.json"), limitsCopy},
		{"/var/log/vllm/audit.log", filepath.Join(dir, "audit.log")},
		{`"/root/workspace`, `"` + dir},
		{`directory = "/root"`, fmt.Sprintf("directory = %q", dir)},
		{`"0.0.0.0:8000"`, fmt.Sprintf(`"127.0.0.1:%d"`, guardPort)},
		{"http://127.0.0.1:8000/v1", fmt.Sprintf("http://127.0.0.1:%d/v1", guardPort)},
		{`"127.0.0.1:9400"`, fmt.Sprintf(`"127.0.0.1:%d"`, metricsPort)},
		{`start_timeout = "30m"`, `start_timeout = "1m"`},
		{`interval = "10s"`, `interval = "200ms"`},
		{`timeout = "5s"`, `timeout = "150ms"`},
		{"# glmctl configuration con", fmt.Sprintf("control { socket = %q }\n# glmctl configuration con", filepath.Join(dir, "glmctl.sock"))},
	} {
		from, to := ft[0], ft[1]
		if !strings.Contains(cfgText, from) {
			t.Fatalf("imported config lacks %q", from)
		}
		cfgText = strings.ReplaceAll(cfgText, from, to)
	}
	cfgPath := filepath.Join(dir, "run.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfgPath)
	waitFor(t, "both programs RUNNING", 30*time.Second, func() bool {
		return glmctl(t, "status", "-c", cfgPath).code == 0
	})
	// A tutorial user's key works through the guard; the same request without
	// a key does not; vLLM's socket is the only way to the model.
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", guardPort)
	post := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"model":"/root/.cache/huggingface/ZhipuAI/GLM-4.7-Flash","messages":[{"role":"user","content":"hi"}],"max_tokens":8}`))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("sk-abc123def456ghi789jkl012mno345pqr"); code != 200 {
		t.Errorf("user1's tutorial key: %d, want 200", code)
	}
	ui, _ := os.ReadFile(filepath.Join(dir, "ui.key"))
	if code := post(strings.TrimSpace(string(ui))); code != 200 {
		t.Errorf("the UI's service key: %d, want 200", code)
	}
	if code := post(""); code != 401 {
		t.Errorf("no key: %d, want 401", code)
	}
	if code := post("sk-your-secure-api-key-here"); code != 401 {
		t.Errorf("the tutorial's published placeholder key: %d, want 401", code)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Type() != os.ModeSocket {
		t.Errorf("vLLM socket %s: %v", sock, err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("glmctl up after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("glmctl up did not stop")
	}
}
