package guard

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	glmtest "github.com/glmctl/glmctl/internal/testutil"
)

func TestMetricsLint(t *testing.T) {
	h := newHarness(t)
	h.do(t, "GET", "/v1/models", keyUser1, nil)
	h.do(t, "GET", "/v1/models", "", nil)
	lintClean(t, h.reg)
	if n := testutil.CollectAndCount(h.g.m.reloads.ok); n != 2 {
		t.Fatalf("reload gauges for %d files, want keys and limits", n)
	}
}

func TestMetricsPerKeySeriesFromStart(t *testing.T) {
	h := newHarness(t)
	for _, k := range []string{"user1", "user2", "admin", "limited"} {
		for _, kind := range []string{"prompt", "completion"} {
			if v, ok := glmtest.Series(t, h.reg, "glmctl_guard_tokens_total", "key", k, "kind", kind); !ok || v != 0 {
				t.Errorf("tokens_total{key=%q,kind=%q} = %v, %v; want 0 from start-up", k, kind, v, ok)
			}
		}
		for _, lim := range limitLabels() {
			if _, ok := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_rejections_total", "key", k, "limit", lim); !ok {
				t.Errorf("no rejections series for key %q limit %q at start-up", k, lim)
			}
		}
	}
	for _, r := range authReasons() {
		if _, ok := glmtest.Series(t, h.reg, "glmctl_guard_auth_failures_total", "reason", r); !ok {
			t.Errorf("no auth failure series for %q at start-up", r)
		}
	}
	// limited: rpm 5, tpm 4000; the others: default rpm 1000, no tpm.
	if v, _ := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_remaining_requests", "key", "limited"); v != 5 {
		t.Errorf("limited's remaining requests = %v, want 5", v)
	}
	if v, _ := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_remaining_requests", "key", "user1"); v != 1000 {
		t.Errorf("user1's remaining requests = %v, want 1000", v)
	}
	if v, _ := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_remaining_tokens", "key", "limited"); v != 4000 {
		t.Errorf("limited's remaining tokens = %v, want 4000", v)
	}
	if _, ok := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_remaining_tokens", "key", "user1"); ok {
		t.Error("user1 has no tpm limit but a remaining tokens series")
	}
	// The remaining gauges follow the limiter.
	if resp, b := h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("glm", 10, false)); resp.StatusCode != 200 {
		t.Fatalf("limited: %d %s", resp.StatusCode, b)
	}
	if v, _ := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_remaining_requests", "key", "limited"); v != 4 {
		t.Errorf("limited's remaining requests after one = %v, want 4", v)
	}
	if v, _ := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_remaining_tokens", "key", "limited"); v >= 4000 || v < 4000-2*(promptTokens+completionTokens) {
		t.Errorf("limited's remaining tokens after one = %v, want about 4000-%d", v, promptTokens+completionTokens)
	}
	// Concurrency slots in use: limited has a concurrency limit (2), user1
	// none (no series). The request above gives its slot back just after
	// its answer (settling does not delay the answer).
	waitFor(t, 10*time.Second, "limited's slot given back", func() bool {
		v, ok := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_concurrency_in_use", "key", "limited")
		return ok && v == 0
	})
	if _, ok := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_concurrency_in_use", "key", "user1"); ok {
		t.Error("user1 has no concurrency limit but a slots series")
	}
	held := make(chan struct{})
	go func() {
		defer close(held)
		h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("hold", 10, false))
	}()
	waitFor(t, 10*time.Second, "one request of limited held upstream", func() bool {
		v, _ := glmtest.Series(t, h.reg, "glmctl_guard_rate_limit_concurrency_in_use", "key", "limited")
		return v == 1
	})
	h.up.releaseAll()
	<-held
}

func TestMetricsLabels(t *testing.T) {
	h := newHarness(t)
	count := func(labels ...string) float64 {
		v, _ := glmtest.Series(t, h.reg, "glmctl_guard_requests_total", labels...)
		return v
	}
	wait := func(what string, cond func() bool) { waitFor(t, 15*time.Second, what, cond) }

	// user2 lists glm-4.7-flash: a known model; user1 lists none, so
	// another model is "other" until the upstream reports it.
	h.do(t, "POST", "/v1/chat/completions", keyUser2, chatBody("glm-4.7-flash", 10, false))
	wait("user2 counted", func() bool {
		return count("key", "user2", "model", "glm-4.7-flash", "route", "/v1/chat/completions", "code", "200") == 1
	})
	h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("mystery", 10, false))
	wait("mystery counted as other", func() bool { return count("key", "user1", "model", "other", "code", "200") == 1 })
	h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("glm-4.7-flash", 10, true))
	wait("stream counted", func() bool { return count("key", "user1", "model", "glm-4.7-flash", "code", "200") == 1 })
	if v, _ := glmtest.Series(t, h.reg, "glmctl_guard_time_to_first_token_seconds", "route", "/v1/chat/completions"); v != 1 {
		t.Errorf("time to first token samples = %v, want 1 (the stream)", v)
	}
	if v, _ := glmtest.Series(t, h.reg, "glmctl_guard_tokens_total", "key", "user1", "kind", "prompt"); v != 2*promptTokens {
		t.Errorf("user1 prompt tokens = %v, want %d", v, 2*promptTokens)
	}

	// Auth failures by reason, under key "unknown".
	h.do(t, "GET", "/v1/models", "", nil)
	h.do(t, "GET", "/v1/models", "sk-nobody-0123456789abcdefghijklmn", nil)
	h.do(t, "POST", "/v1/chat/completions", keyUser2, chatBody("not-allowed", 10, false))
	h.do(t, "POST", "/tokenize", keyUser1, map[string]any{"prompt": "x"})
	h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("fail", 10, false))
	h.do(t, "GET", "/health", "", nil)
	for _, reason := range []string{authMissing, authUnknown, authForbiddenModel, authForbiddenRoute} {
		wait("auth failure "+reason, func() bool {
			v, _ := glmtest.Series(t, h.reg, "glmctl_guard_auth_failures_total", "reason", reason)
			return v == 1
		})
	}
	wait("unknown key counted", func() bool {
		return count("key", "unknown", "model", "none", "route", "/v1/models", "code", "401") == 2
	})
	wait("forbidden route counted", func() bool { return count("key", "user1", "route", "/tokenize", "code", "403") == 1 })
	wait("upstream 500 counted", func() bool { v, _ := glmtest.Series(t, h.reg, "glmctl_guard_upstream_errors_total"); return v == 1 })
	wait("health counted", func() bool { return count("route", "/health", "code", "200") == 1 })

	// Expired and disabled keys.
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	replaceFile(t, h.keysPath, `{"api_keys": {
  "user1": "`+keyUser1+`",
  "user2": {"sha256": "`+keys.Hash(keyUser2)+`", "expires": "`+past+`"},
  "admin": {"sha256": "`+keys.Hash(keyAdmin)+`", "disabled": true}
}}`)
	if err := h.g.Reload(); err != nil {
		t.Fatal(err)
	}
	h.do(t, "GET", "/v1/models", keyUser2, nil)
	h.do(t, "GET", "/v1/models", keyAdmin, nil)
	for _, reason := range []string{authExpired, authDisabled} {
		wait("auth failure "+reason, func() bool {
			v, _ := glmtest.Series(t, h.reg, "glmctl_guard_auth_failures_total", "reason", reason)
			return v == 1
		})
	}
	// limited was removed: its series went with it.
	for _, f := range []string{"glmctl_guard_tokens_total", "glmctl_guard_rate_limit_rejections_total", "glmctl_guard_rate_limit_remaining_requests"} {
		if _, ok := glmtest.Series(t, h.reg, f, "key", "limited"); ok {
			t.Errorf("%s keeps a series of the removed key", f)
		}
	}

	// The upstream's /v1/models answer makes its models known.
	if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 200 {
		t.Fatalf("models: %d", resp.StatusCode)
	}
	h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("glm-4.7-flash", 10, false))
	wait("learnt model counted", func() bool { return count("key", "user1", "model", "glm-4.7-flash", "code", "200") == 2 })
}

// TestMetricsModelReady: glmctl_guard_model_ready follows what the guard
// does with an inference request, labelled with the gated program.
func TestMetricsModelReady(t *testing.T) {
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.Program = "model-a" })
	ready := func() float64 {
		v, ok := glmtest.Series(t, h.reg, "glmctl_guard_model_ready", "program", "model-a")
		if !ok {
			t.Fatal("no glmctl_guard_model_ready{program=\"model-a\"}")
		}
		return v
	}
	if v := ready(); v != 1 {
		t.Fatalf("ready program: %v, want 1", v)
	}
	h.setReady(false)
	if v := ready(); v != 0 {
		t.Fatalf("program not ready: %v, want 0", v)
	}
	if resp, _ := h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("glm", 10, false)); resp.StatusCode != 503 {
		t.Fatalf("request while the metric says 0: %d, want 503", resp.StatusCode)
	}
	h.setReady(true)
	if v := ready(); v != 1 {
		t.Fatalf("ready again: %v, want 1", v)
	}
}

func TestMetricsUpstreamUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.Upstream = dead })
	if resp, _ := h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("glm", 10, false)); resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	waitFor(t, 15*time.Second, "upstream error counted", func() bool {
		v, _ := glmtest.Series(t, h.reg, "glmctl_guard_upstream_errors_total")
		return v == 1
	})
}

func TestMetricsSharedReloads(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, err := NewReloadMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r.Record("/etc/glmctl/glmctl.hcl", false)
	if v, ok := glmtest.Series(t, reg, "glmctl_config_last_reload_success_timestamp_seconds", "file", "/etc/glmctl/glmctl.hcl"); !ok || v != 0 {
		t.Errorf("timestamp before any success = %v, %v; want 0", v, ok)
	}
	dir := t.TempDir()
	cfg := &config.Guard{Upstream: "http://127.0.0.1:1", KeysFile: dir + "/keys.json", LimitsFile: dir + "/limits.json"}
	mustWrite(t, cfg.KeysFile, defaultKeysFile())
	mustWrite(t, cfg.LimitsFile, defaultLimitsFile)
	if _, err := New(cfg, Deps{Registerer: reg, Reloads: r}); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(r.ok); n != 3 {
		t.Errorf("shared reload gauges hold %d files, want the config, keys and limits files", n)
	}
	lintClean(t, reg)
}

func lintClean(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestMemoryStorePeek(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := NewMemoryStore(func() time.Time { return now })
	ctx := context.Background()
	lim := Limit{RPM: 6, TPM: 1000}
	st, err := s.Peek(ctx, "k", lim, GlobalLimit{})
	if err != nil || st.RemainingRequests != 6 || st.RemainingTokens != 1000 {
		t.Fatalf("fresh peek = %+v, %v; want 6 requests, 1000 tokens", st, err)
	}
	d, err := s.Admit(ctx, Ask{Key: "k", Limit: lim, Tokens: 300})
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	st, _ = s.Peek(ctx, "k", lim, GlobalLimit{})
	if st.RemainingRequests != d.Status.RemainingRequests || st.RemainingTokens != d.Status.RemainingTokens {
		t.Fatalf("peek %+v disagrees with the admission's headers %+v", st, d.Status)
	}
	again, _ := s.Peek(ctx, "k", lim, GlobalLimit{})
	if again != st {
		t.Fatalf("peeking changed the state: %+v then %+v", st, again)
	}
	now = now.Add(10 * time.Second) // one request interval, a sixth of the tokens
	st, _ = s.Peek(ctx, "k", lim, GlobalLimit{})
	if st.RemainingRequests != 6 || st.RemainingTokens != 866 {
		t.Fatalf("after 10s: %+v, want 6 requests and 866 tokens", st)
	}
	// Without a key rpm the global rpm is reported.
	st, _ = s.Peek(ctx, "other", Limit{}, GlobalLimit{RPM: 60})
	if st.LimitRequests != 60 || st.RemainingRequests != 60 || st.LimitTokens != 0 {
		t.Fatalf("global: %+v", st)
	}
}

// BenchmarkMetricsObserve measures what the metrics add to each request.
func BenchmarkMetricsObserve(b *testing.B) {
	h := newHarness(b)
	k, err := h.g.snap.Load().keys.Lookup(keyUser2, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	x := &exchange{start: time.Now(), path: "/v1/chat/completions", rt: lookupRoute("/v1/chat/completions"), key: k, model: "glm-4.7-flash",
		stream: true, admitted: true, promptTokens: 11, completionTokens: 7, upstreamDone: true, upstreamStatus: 200}
	first := x.start.Add(time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.g.m.observe(x, 200, 5*time.Millisecond, first)
		}
	})
}
