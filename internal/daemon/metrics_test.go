package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/glmctl/glmctl/hcl"
	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	glmtest "github.com/glmctl/glmctl/internal/testutil"
	"github.com/glmctl/glmctl/pkg/launcher"
)

// TestMain lets the test binary act as a program keeper: the supervisor
// re-executes its own executable for every program it starts.
func TestMain(m *testing.M) {
	launcher.RunKeeperIfRequested()
	if _, ok := os.LookupEnv("GORACE"); !ok {
		// Keepers are re-execs of this race binary: no 1 s sleep at their exit.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}

// Test keys.
const (
	keyAlice = "sk-alice-0123456789abcdefghijklmnop"
	keyBob   = "sk-bob-0123456789abcdefghijklmnopqr"
	keyCarol = "sk-carol-0123456789abcdefghijklmnop"
	keyDave  = "sk-dave-0123456789abcdefghijklmnopq"
	keyErin  = "sk-erin-0123456789abcdefghijklmnopq"
)

const goldenKeys = `{"api_keys": {
  "alice": {"sha256": "%s", "models": ["glm-test"]},
  "bob":   {"sha256": "%s"},
  "carol": {"sha256": "%s"},
  "dave":  {"sha256": "%s"}
}}`

const goldenLimits = `{"rate_limits": {
  "bob":   {"rpm": 1},
  "carol": {"tpm": 100}
}}`

// upstream is a small OpenAI-speaking model server on a loopback port: chat
// completions (JSON, or SSE with a usage chunk), models; the model "boom"
// answers 500 and "hold" waits for release.
type upstream struct {
	url     string
	release chan struct{}
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.url = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(u.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	model := ""
	if i := bytes.Index(body, []byte(`"model":"`)); i >= 0 {
		rest := body[i+len(`"model":"`):]
		model = string(rest[:bytes.IndexByte(rest, '"')])
	}
	const usage = `{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}`
	switch {
	case r.URL.Path == "/v1/models":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"glm-test","object":"model"}]}`)
	case model == "boom":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":{"message":"engine dead","type":"server_error","param":null,"code":null}}`)
	case bytes.Contains(body, []byte(`"stream":true`)):
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n")
		fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", usage)
	default:
		if model == "hold" {
			select {
			case <-u.release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":%s}`, usage)
	}
}

// testDaemon is a daemon built from an HCL config and running.
type testDaemon struct {
	d      *Daemon
	dir    string
	guard  string // http://host:port
	cancel context.CancelFunc
	done   chan error
}

// startDaemon writes the keys and limits files, parses the HCL config (with
// @DIR@ and @UPSTREAM@ replaced) and runs a daemon from it.
func startDaemon(t *testing.T, dir, src, upstreamURL string) *testDaemon {
	t.Helper()
	src = strings.NewReplacer("@DIR@", dir, "@UPSTREAM@", upstreamURL).Replace(src)
	writeFile(t, filepath.Join(dir, "keys.json"), fmt.Sprintf(goldenKeys,
		keys.Hash(keyAlice), keys.Hash(keyBob), keys.Hash(keyCarol), keys.Hash(keyDave)))
	writeFile(t, filepath.Join(dir, "limits.json"), goldenLimits)
	cfg, err := config.Parse([]byte(src), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	// What New will do once the lead wires it; harmless twice.
	if err := registerProgramMetrics(d.Registry(), d.sup); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	td := &testDaemon{d: d, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { td.done <- d.Run(ctx) }()
	t.Cleanup(td.stop(t))
	waitFor(t, 10*time.Second, "guard and metrics listening", func() bool {
		return d.guard.Addr() != nil && d.MetricsAddr() != nil
	})
	td.guard = "http://" + d.guard.Addr().String()
	return td
}

func (td *testDaemon) stop(t *testing.T) func() {
	return func() {
		td.cancel()
		select {
		case err := <-td.done:
			if err != nil {
				t.Errorf("daemon run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("daemon did not stop")
		}
	}
}

// request sends one request to the guard and returns its status.
func (td *testDaemon) request(t *testing.T, method, path, key, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, td.guard+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func chat(model string, maxTokens int, stream bool) string {
	return fmt.Sprintf(`{"model":"%s","messages":[{"role":"user","content":"Say hello"}],"max_tokens":%d,"stream":%t}`, model, maxTokens, stream)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sum adds up the counters of family name.
func sum(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// value is testutil.Series.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	return glmtest.Series(t, g, name, labels...)
}

func mustValue(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, ok := value(t, g, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

func lint(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// goldenConfig has a program that exits 3 at once (EXITED), one that is not
// started (STOPPED) and a guard over the test upstream.
const goldenConfig = `
control { socket = "@DIR@/glmctl.sock" }
metrics { listen = "127.0.0.1:0" }
program "once" {
  command = ["/bin/sh", "-c", "exit 3"]
  restart = "never"
}
program "idle" {
  command   = ["/bin/sh", "-c", "sleep 60"]
  autostart = false
}
guard {
  listen      = "127.0.0.1:0"
  upstream    = "@UPSTREAM@"
  keys_file   = "@DIR@/keys.json"
  limits_file = "@DIR@/limits.json"
}
`

// goldenFamilies are compared with testdata/metrics/golden.prom; histograms,
// timestamps, uptimes and the Go and process collectors vary from run to run.
var goldenFamilies = []string{
	"glmctl_build_info",
	"glmctl_config_last_reload_successful",
	"glmctl_guard_auth_failures_total",
	"glmctl_guard_in_flight_requests",
	"glmctl_guard_model_ready",
	"glmctl_guard_rate_limit_rejections_total",
	"glmctl_guard_rate_limit_remaining_requests",
	"glmctl_guard_rate_limit_remaining_tokens",
	"glmctl_guard_requests_total",
	"glmctl_guard_tokens_total",
	"glmctl_guard_upstream_errors_total",
	"glmctl_program_last_exit_code",
	"glmctl_program_ready",
	"glmctl_program_restarts_total",
	"glmctl_program_state",
	"glmctl_program_up",
}

// TestMetricsGolden runs a fixed scenario through a real daemon and compares
// the exposition with testdata/metrics/golden.prom (GLMCTL_UPDATE_GOLDEN=1
// rewrites it).
func TestMetricsGolden(t *testing.T) {
	dir := t.TempDir()
	up := newUpstream(t)
	td := startDaemon(t, dir, goldenConfig, up.url)
	reg := td.d.Registry()
	waitFor(t, 10*time.Second, "program once EXITED", func() bool {
		st, err := td.d.sup.Status("once")
		return err == nil && st[0].State == launcher.StateExited
	})

	steps := []struct {
		method, path, key, body string
		want                    int
	}{
		{"POST", "/v1/chat/completions", keyAlice, chat("glm-test", 10, false), 200},
		{"POST", "/v1/chat/completions", keyAlice, chat("glm-test", 10, true), 200},
		{"POST", "/v1/chat/completions", keyAlice, chat("secret-model", 10, false), 403}, // forbidden_model
		{"POST", "/pause", keyAlice, "", 403},                                            // forbidden_route
		{"GET", "/v1/models", "", "", 401},                                               // missing
		{"GET", "/v1/models", "sk-nobody-0123456789abcdefghijklmn", "", 401},             // unknown
		{"GET", "/nowhere", keyAlice, "", 404},
		{"POST", "/v1/chat/completions", keyBob, chat("glm-test", 10, false), 200},
		{"POST", "/v1/chat/completions", keyBob, chat("glm-test", 10, false), 429},    // rpm
		{"POST", "/v1/chat/completions", keyCarol, chat("glm-test", 500, false), 413}, // reservation over tpm
		{"POST", "/v1/chat/completions", keyDave, chat("boom", 10, false), 500},       // upstream error
		{"POST", "/v1/chat/completions", keyDave, chat("some-model", 10, false), 200},
	}
	for i, s := range steps {
		if got := td.request(t, s.method, s.path, s.key, s.body); got != s.want {
			t.Fatalf("step %d %s %s: status %d, want %d", i, s.method, s.path, got, s.want)
		}
	}
	// The counters move once a response has ended: wait for all of them.
	waitFor(t, 5*time.Second, "every request counted", func() bool {
		return sum(t, reg, "glmctl_guard_requests_total") == float64(len(steps))
	})
	lint(t, reg)

	golden := filepath.Join("..", "..", "testdata", "metrics", "golden.prom")
	subst := strings.NewReplacer("@DIR@", dir, "@GOVERSION@", runtime.Version())
	if os.Getenv("GLMCTL_UPDATE_GOLDEN") == "1" {
		writeGolden(t, reg, golden, dir)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(subst.Replace(string(want))), goldenFamilies...); err != nil {
		t.Fatal(err)
	}
	// Histograms: one duration sample per request, one time to first token
	// for the stream.
	if v := mustValue(t, reg, "glmctl_guard_request_duration_seconds", "route", "/v1/chat/completions"); v != 8 {
		t.Errorf("chat duration samples = %v, want 8", v)
	}
	if v := mustValue(t, reg, "glmctl_guard_time_to_first_token_seconds", "route", "/v1/chat/completions"); v != 1 {
		t.Errorf("time to first token samples = %v, want 1", v)
	}
}

// writeGolden writes the golden families of reg to path, in the text
// exposition format, with the temporary directory and the Go version replaced
// by placeholders.
func writeGolden(t *testing.T, reg prometheus.Gatherer, path, dir string) {
	t.Helper()
	keep := map[string]bool{}
	for _, f := range goldenFamilies {
		keep[f] = true
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, req)
	var out strings.Builder
	for _, line := range strings.SplitAfter(rec.Body.String(), "\n") {
		name := line
		if f := strings.Fields(line); len(f) > 2 && f[0] == "#" {
			name = f[2]
		}
		if i := strings.IndexAny(name, "{ "); i >= 0 {
			name = name[:i]
		}
		if keep[name] {
			out.WriteString(line)
		}
	}
	s := strings.NewReplacer(dir, "@DIR@", runtime.Version(), "@GOVERSION@").Replace(out.String())
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDemoRegistryLint builds a daemon from hcl/demo.hcl (its state
// directory moved to a temporary one) and lints its whole registry.
func TestDemoRegistryLint(t *testing.T) {
	dir := t.TempDir()
	src := strings.ReplaceAll(string(hcl.Demo()), "/tmp/glmctl-demo", dir)
	cfg, err := config.ParseWithOptions([]byte(src), "demo.hcl", config.Options{Executable: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfg.Guard.KeysFile, fmt.Sprintf(`{"api_keys": {"demo": {"sha256": %q}, "webui": {"sha256": %q}}}`,
		keys.Hash(keyAlice), keys.Hash(keyBob)))
	writeFile(t, cfg.Guard.LimitsFile, `{"rate_limits": {"default": {"rpm": 60, "tpm": 60000, "concurrency": 8}}}`)
	d, err := New(cfg, Options{Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.closeAudit)
	if err := registerProgramMetrics(d.Registry(), d.sup); err != nil {
		t.Fatal(err)
	}
	lint(t, d.Registry())
	for _, want := range []struct {
		name   string
		labels []string
	}{
		{"glmctl_build_info", []string{"version", "v0.0.0-test"}},
		{"glmctl_program_state", []string{"program", "vllm", "state", "STOPPED"}},
		{"glmctl_program_restarts_total", []string{"program", "ui"}},
		{"glmctl_program_last_exit_code", []string{"program", "vllm"}},
		{"glmctl_guard_tokens_total", []string{"key", "demo", "kind", "prompt"}},
		{"glmctl_guard_rate_limit_rejections_total", []string{"key", "webui", "limit", "global_concurrency"}},
		{"glmctl_guard_rate_limit_remaining_requests", []string{"key", "demo"}},
		{"glmctl_guard_rate_limit_remaining_tokens", []string{"key", "webui"}},
		{"glmctl_guard_auth_failures_total", []string{"reason", "expired"}},
		{"glmctl_config_last_reload_successful", []string{"file", cfg.Guard.KeysFile}},
		{"glmctl_audit_records_total", nil},
		{"go_goroutines", nil},
		{"process_start_time_seconds", nil},
	} {
		if _, ok := value(t, d.Registry(), want.name, want.labels...); !ok {
			t.Errorf("no series %s%v at start-up", want.name, want.labels)
		}
	}
	if v := mustValue(t, d.Registry(), "glmctl_program_last_exit_code", "program", "vllm"); v != -1 {
		t.Errorf("last exit code before any exit = %v, want -1", v)
	}
	if v := mustValue(t, d.Registry(), "glmctl_guard_rate_limit_remaining_tokens", "key", "demo"); v != 60000 {
		t.Errorf("remaining tokens at start-up = %v, want 60000", v)
	}
}

// moveConfig has a program that crashes 200 ms after each start, and a
// guard; /metrics wants a bearer token.
const moveConfig = `
control { socket = "@DIR@/glmctl.sock" }
metrics {
  listen            = "127.0.0.1:0"
  bearer_token_file = "@DIR@/metrics.token"
}
program "crasher" {
  command    = ["/bin/sh", "-c", "sleep 0.2; exit 1"]
  restart    = "always"
  start_secs = "50ms"
  backoff {
    initial = "20ms"
    max     = "50ms"
  }
}
program "steady" {
  command    = ["/bin/sh", "-c", "exec sleep 60"]
  start_secs = "50ms"
}
guard {
  listen      = "127.0.0.1:0"
  upstream    = "@UPSTREAM@"
  keys_file   = "@DIR@/keys.json"
  limits_file = "@DIR@/limits.json"
}
`

// scrape fetches /metrics with the token ("" for none) and returns the
// status and body.
func scrape(t *testing.T, addr net.Addr, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr.String()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestMetricsMove runs a real daemon (a crashing program under the real
// supervisor, the real guard over a real upstream) and watches the metrics
// move as requests, rejections, restarts and reloads happen.
func TestMetricsMove(t *testing.T) {
	dir := t.TempDir()
	const token = "metrics-secret-0123456789"
	writeFile(t, filepath.Join(dir, "metrics.token"), token+"\n")
	up := newUpstream(t)
	td := startDaemon(t, dir, moveConfig, up.url)
	reg := td.d.Registry()
	addr := td.d.MetricsAddr()

	t.Run("bearer token", func(t *testing.T) {
		if code, _ := scrape(t, addr, ""); code != http.StatusUnauthorized {
			t.Errorf("without token: %d, want 401", code)
		}
		if code, _ := scrape(t, addr, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("wrong token: %d, want 401", code)
		}
		code, body := scrape(t, addr, token)
		if code != http.StatusOK {
			t.Fatalf("with token: %d, want 200", code)
		}
		for _, want := range []string{`glmctl_program_state{program="crasher",state="`, `glmctl_guard_tokens_total{key="alice",kind="prompt"} 0`, "glmctl_build_info{"} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if strings.Contains(body, token) {
			t.Error("/metrics shows its own token")
		}
	})

	t.Run("restarts", func(t *testing.T) {
		waitFor(t, 10*time.Second, "two restarts counted", func() bool {
			v, _ := value(t, reg, "glmctl_program_restarts_total", "program", "crasher")
			return v >= 2
		})
		if v := mustValue(t, reg, "glmctl_program_last_exit_code", "program", "crasher"); v != 1 {
			t.Errorf("last exit code = %v, want 1", v)
		}
		var states float64
		for _, s := range []string{"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL"} {
			states += mustValue(t, reg, "glmctl_program_state", "program", "crasher", "state", s)
		}
		if states != 1 {
			t.Errorf("program in %v states at once, want 1", states)
		}
	})

	t.Run("running", func(t *testing.T) {
		waitFor(t, 10*time.Second, "steady ready", func() bool {
			v, _ := value(t, reg, "glmctl_program_ready", "program", "steady")
			return v == 1
		})
		if v := mustValue(t, reg, "glmctl_program_state", "program", "steady", "state", "RUNNING"); v != 1 {
			t.Errorf("state RUNNING = %v, want 1", v)
		}
		if v := mustValue(t, reg, "glmctl_program_up", "program", "steady"); v != 1 {
			t.Errorf("up = %v, want 1", v)
		}
		start := mustValue(t, reg, "glmctl_program_start_time_seconds", "program", "steady")
		if now := float64(time.Now().Unix()); start < now-30 || start > now+1 {
			t.Errorf("start time %v, want about %v", start, now)
		}
		waitFor(t, 5*time.Second, "uptime above 0", func() bool {
			return mustValue(t, reg, "glmctl_program_uptime_seconds", "program", "steady") > 0
		})
	})

	t.Run("requests", func(t *testing.T) {
		requests := func(key, code string) float64 {
			v, _ := value(t, reg, "glmctl_guard_requests_total", "key", key, "code", code)
			return v
		}
		if got := td.request(t, "POST", "/v1/chat/completions", keyAlice, chat("glm-test", 10, false)); got != 200 {
			t.Fatalf("alice: %d", got)
		}
		waitFor(t, 5*time.Second, "alice counted", func() bool { return requests("alice", "200") == 1 })
		if v := mustValue(t, reg, "glmctl_guard_tokens_total", "key", "alice", "kind", "completion"); v != 7 {
			t.Errorf("completion tokens = %v, want 7", v)
		}
		td.request(t, "POST", "/v1/chat/completions", keyBob, chat("glm-test", 10, false))
		if v := mustValue(t, reg, "glmctl_guard_rate_limit_remaining_requests", "key", "bob"); v != 0 {
			t.Errorf("bob's remaining requests after his one = %v, want 0", v)
		}
		if got := td.request(t, "POST", "/v1/chat/completions", keyBob, chat("glm-test", 10, false)); got != 429 {
			t.Fatalf("bob's second: %d, want 429", got)
		}
		waitFor(t, 5*time.Second, "rpm rejection counted", func() bool {
			v, _ := value(t, reg, "glmctl_guard_rate_limit_rejections_total", "key", "bob", "limit", "rpm")
			return v == 1
		})
		td.request(t, "GET", "/v1/models", "", "")
		waitFor(t, 5*time.Second, "auth failure counted", func() bool {
			v, _ := value(t, reg, "glmctl_guard_auth_failures_total", "reason", "missing")
			return v == 1
		})

		// In flight while the upstream holds it.
		done := make(chan int, 1)
		go func() { done <- td.request(t, "POST", "/v1/chat/completions", keyDave, chat("hold", 10, false)) }()
		waitFor(t, 5*time.Second, "one request in flight", func() bool {
			return mustValue(t, reg, "glmctl_guard_in_flight_requests") == 1
		})
		close(up.release)
		if got := <-done; got != 200 {
			t.Fatalf("held request: %d", got)
		}
		waitFor(t, 5*time.Second, "in flight back to 0", func() bool {
			return mustValue(t, reg, "glmctl_guard_in_flight_requests") == 0
		})
	})

	t.Run("reloads", func(t *testing.T) {
		keysFile := filepath.Join(dir, "keys.json")
		before := mustValue(t, reg, "glmctl_config_last_reload_success_timestamp_seconds", "file", keysFile)
		// bob leaves, erin arrives.
		writeFile(t, keysFile, fmt.Sprintf(`{"api_keys": {"alice": {"sha256": %q}, "erin": {"sha256": %q}}}`,
			keys.Hash(keyAlice), keys.Hash(keyErin)))
		if err := td.d.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, ok := value(t, reg, "glmctl_guard_tokens_total", "key", "erin", "kind", "prompt"); !ok {
			t.Error("no series for the new key erin")
		}
		for _, f := range []string{"glmctl_guard_tokens_total", "glmctl_guard_rate_limit_rejections_total",
			"glmctl_guard_requests_total", "glmctl_guard_rate_limit_remaining_requests"} {
			if _, ok := value(t, reg, f, "key", "bob"); ok {
				t.Errorf("%s still has a series for the removed key bob", f)
			}
		}
		if v := mustValue(t, reg, "glmctl_config_last_reload_success_timestamp_seconds", "file", keysFile); v <= before {
			t.Errorf("reload time did not move: %v then %v", before, v)
		}
		// A broken file keeps the old keys and says so.
		writeFile(t, keysFile, `{"api_keys": {`)
		if err := td.d.Reload(context.Background()); err == nil {
			t.Fatal("reload of a broken keys file succeeded")
		}
		if v := mustValue(t, reg, "glmctl_config_last_reload_successful", "file", keysFile); v != 0 {
			t.Errorf("last_reload_successful = %v after a broken file, want 0", v)
		}
		if _, ok := value(t, reg, "glmctl_guard_tokens_total", "key", "erin"); !ok {
			t.Error("a broken reload dropped the series of the kept keys")
		}
	})
	lint(t, reg)
}
