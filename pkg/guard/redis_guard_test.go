package guard

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/glmctl/glmctl/internal/config"
)

// TestTwoGuardsShareLimits (issue 11): two guards in front of one model,
// each configured with the same Redis limits_store, admit exactly the key's
// limit between them under a concurrent burst split across both.
func TestTwoGuardsShareLimits(t *testing.T) {
	r := startRedis(t)
	prefix := testPrefix(t)
	withRedis := func(cfg *config.Guard, h *harness) {
		cfg.LimitsStore = r.url()
		h.store = newTestRedisStore(t, r, RedisOptions{Prefix: prefix})
	}
	limits := withLimits(`{"rate_limits": {"limited": {"rpm": 7}}}`)
	a := newHarness(t, limits, withRedis)
	b := newHarness(t, limits, withRedis)
	// Both bursts at once, one through each guard.
	results := make(chan map[int]int, 2)
	for _, h := range []*harness{a, b} {
		go func() { results <- h.burst(t, 20, func(int) string { return keyLimit }, "GET", "/v1/models", nil) }()
	}
	got := map[int]int{}
	for range 2 {
		for code, c := range <-results {
			got[code] += c
		}
	}
	if got[200] != 7 || got[429] != 33 {
		t.Fatalf("two guards on one Redis: %v, want 7×200 and 33×429", got)
	}
}

// TestStoreFailureModes (issue 11): with Redis gone, limits_store_failure =
// "closed" answers 503 + Retry-After, "open" admits under this box's own
// limits (counted); both recover by themselves when Redis is back.
func TestStoreFailureModes(t *testing.T) {
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			r := startRedis(t)
			h := newHarness(t, func(cfg *config.Guard, h *harness) {
				cfg.LimitsStore, cfg.LimitsStoreFailure = r.url(), mode
			})
			if h.g.shared == nil {
				t.Fatal("the guard did not build a Redis store from limits_store")
			}
			if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 200 {
				t.Fatalf("with Redis up: %d", resp.StatusCode)
			}
			r.kill()
			waitFor(t, 10*time.Second, "the store down", func() bool {
				resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil)
				return resp.StatusCode != 200 || mode == "open" && !h.g.shared.Up()
			})
			resp, body := h.do(t, "GET", "/v1/models", keyUser1, nil)
			switch mode {
			case "closed":
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || errorBody(t, body).Code != codeLimitsDown {
					t.Fatalf("closed, Redis down: %d %s", resp.StatusCode, body)
				}
			case "open":
				if resp.StatusCode != 200 {
					t.Fatalf("open, Redis down: %d %s", resp.StatusCode, body)
				}
				if v := testutil.ToFloat64(h.g.m.storeFallback); v < 1 {
					t.Fatalf("fallback admissions counted %v", v)
				}
			}
			if strings.Count(h.logs.String(), "limit store failed") != 0 {
				t.Fatal("the outage was logged per request")
			}
			r.restart()
			waitFor(t, 10*time.Second, "served through Redis again", func() bool {
				resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil)
				return resp.StatusCode == 200 && h.g.shared.Up()
			})
		})
	}
}
