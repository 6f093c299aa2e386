package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/internal/testutil"
	"github.com/glmctl/glmctl/pkg/audit"
)

// Test keys.
const (
	keyUser1 = "sk-user1-0123456789abcdefghijklmnop"
	keyUser2 = "sk-user2-0123456789abcdefghijklmnop"
	keyAdmin = "sk-admin-0123456789abcdefghijklmnop"
	keyLimit = "sk-limit-0123456789abcdefghijklmnop"
)

// memAudit keeps records in memory; fail makes Write return an error.
type memAudit struct {
	mu   sync.Mutex
	recs []audit.Record
	fail bool
}

func (m *memAudit) Write(_ context.Context, r *audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return fmt.Errorf("disk full")
	}
	m.recs = append(m.recs, *r)
	return nil
}

func (m *memAudit) setFail(v bool) {
	m.mu.Lock()
	m.fail = v
	m.mu.Unlock()
}

func (m *memAudit) byID(id string) []audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []audit.Record
	for _, r := range m.recs {
		if r.RequestID == id {
			out = append(out, r)
		}
	}
	return out
}

// completed waits for the request's "completed" record and returns all of
// the request's records (it is written after the response ends).
func (m *memAudit) completed(t testing.TB, id string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	waitFor(t, 15*time.Second, "completed audit record", func() bool {
		recs = m.byID(id)
		return len(recs) > 0 && recs[len(recs)-1].Stage == audit.StageCompleted
	})
	return recs
}

func (m *memAudit) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

type harness struct {
	g        *Guard
	up       *standIn
	cfg      *config.Guard
	audit    *memAudit
	reg      *prometheus.Registry
	url      string // http://127.0.0.1:port
	dir      string
	ready    *bool
	readyMu  *sync.Mutex
	logs     *testutil.SyncBuffer
	cancel   context.CancelFunc
	runDone  chan error
	keysPath string
	auditor  Auditor // what the guard writes to; default audit
	store    Store   // the guard's limit store; nil: its default
	policy   *config.Policy
}

// withStore makes the guard decide admissions with s.
func withStore(s Store) harnessOpt {
	return func(_ *config.Guard, h *harness) { h.store = s }
}

// frozenStore is an in-process store whose clock never moves, so a burst
// arrives "within one refill interval" however slowly a loaded machine
// delivers it.
func frozenStore() *MemoryStore {
	at := time.Unix(1_800_000_000, 0)
	return NewMemoryStore(func() time.Time { return at })
}

// withAuditor makes the guard write to a instead of the in-memory log.
func withAuditor(a Auditor) harnessOpt {
	return func(_ *config.Guard, h *harness) { h.auditor = a }
}

type harnessOpt func(*config.Guard, *harness)

func defaultKeysFile() string {
	return `{"api_keys": {
  "user1": "` + keyUser1 + `",  # the tutorial's clear form
  "user2": {"sha256": "` + keys.Hash(keyUser2) + `", "models": ["glm-4.7-flash", "hold", "slow", "fail"]},
  "admin": {"sha256": "` + keys.Hash(keyAdmin) + `", "role": "admin"},
  "limited": {"sha256": "` + keys.Hash(keyLimit) + `"}
}}`
}

const defaultLimitsFile = `{"rate_limits": {
  "default": {"rpm": 1000},   // generous
  "limited": {"rpm": 5, "tpm": 4000, "concurrency": 2}
}}`

// newHarness starts a stand-in upstream and a guard in front of it on a real
// loopback port.
func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir(), audit: &memAudit{}, reg: prometheus.NewRegistry(), logs: &testutil.SyncBuffer{}, readyMu: &sync.Mutex{}}
	ready := true
	h.ready = &ready
	h.keysPath = filepath.Join(h.dir, "api_keys.json")
	limitsPath := filepath.Join(h.dir, "rate_limits.json")
	mustWrite(t, h.keysPath, defaultKeysFile())
	mustWrite(t, limitsPath, defaultLimitsFile)
	h.cfg = &config.Guard{
		Listen:           "127.0.0.1:0",
		KeysFile:         h.keysPath,
		LimitsFile:       limitsPath,
		MaxBody:          64 << 10,
		DefaultMaxTokens: 100,
		DrainTimeout:     500 * time.Millisecond,
		HeaderTimeout:    5 * time.Second,
	}
	unix := false
	for _, o := range opts {
		o(h.cfg, h)
	}
	if h.up == nil {
		h.up = newStandIn(t, unix)
	}
	if h.auditor == nil {
		h.auditor = h.audit
	}
	if h.cfg.Upstream == "" {
		h.cfg.Upstream = h.up.url
	}
	logger := hclog.New(&hclog.LoggerOptions{Output: h.logs, Level: hclog.Debug})
	g, err := New(h.cfg, Deps{
		Logger: logger, Registerer: h.reg, Audit: h.auditor, Store: h.store, Policy: h.policy,
		Ready: func(string) bool { h.readyMu.Lock(); defer h.readyMu.Unlock(); return *h.ready },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.g = g
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.runDone = make(chan error, 1)
	go func() { h.runDone <- g.Run(ctx) }()
	waitFor(t, 15*time.Second, "guard listening", func() bool { return g.Addr() != nil })
	h.url = "http://" + g.Addr().String()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.runDone:
		case <-time.After(5 * time.Second):
			t.Error("guard did not stop")
		}
	})
	return h
}

func withUnixUpstream(t testing.TB) harnessOpt {
	return func(_ *config.Guard, h *harness) { h.up = newStandIn(t, true) }
}

func (h *harness) setReady(v bool) {
	h.readyMu.Lock()
	*h.ready = v
	h.readyMu.Unlock()
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile saves content the way editors do: a new file renamed over path.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	mustWrite(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// do sends one request and returns the response with its body read.
func (h *harness) do(t testing.TB, method, path, key string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = bytes.NewReader([]byte(b))
		case []byte:
			rd = bytes.NewReader(b)
		default:
			raw, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequest(method, h.url+path, rd)
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
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, out
}

func chatBody(model string, maxTokens int, stream bool) map[string]any {
	b := map[string]any{
		"model":    model,
		"messages": []map[string]string{{"role": "user", "content": "Say hello"}},
	}
	if maxTokens > 0 {
		b["max_tokens"] = maxTokens
	}
	if stream {
		b["stream"] = true
	}
	return b
}

// errorBody decodes an OpenAI error body.
func errorBody(t testing.TB, b []byte) apiError {
	t.Helper()
	var e struct {
		Error apiError `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("not an OpenAI error body: %q", b)
	}
	return e.Error
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

func jsonReader(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// snapshot returns a copy of every record so far.
func (m *memAudit) snapshot() []audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Record(nil), m.recs...)
}
