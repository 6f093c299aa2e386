package guard

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// TestPolicyOverHTTP (issue 14): the policy stage of a real guard: a reject
// rule is a 400 naming the rule and never the text, a flag is served and
// recorded, denied parameters are refused, a key's override tightens, and
// every decision is in the audit record and the metric.
func TestPolicyOverHTTP(t *testing.T) {
	pol := &config.Policy{
		DenyParams: []string{"logprobs"},
		Rules: []*config.PolicyRule{
			{Name: "no-credentials", Pattern: "(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY", Action: config.PolicyReject},
			{Name: "watchlist", Literal: []string{"违禁词"}, Action: config.PolicyFlag},
		},
	}
	h := newHarness(t, func(_ *config.Guard, h *harness) { h.policy = pol })
	replaceFile(t, h.keysPath, `{"api_keys": {
  "user2": {"sha256": "`+keys.Hash(keyUser2)+`", "models": ["glm-4.7-flash"]},
  "capped": {"sha256": "`+keys.Hash(keyLimit)+`", "policy": {"max_tokens": 500}}
}}`)
	waitFor(t, 10*time.Second, "keys reloaded", func() bool {
		resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil) // user1 is gone from the new file
		return resp.StatusCode == 401
	})
	chat := func(content string, extra map[string]any) map[string]any {
		b := chatBody("glm-4.7-flash", 100, false)
		b["messages"] = []map[string]any{{"role": "user", "content": []map[string]string{{"type": "text", "text": content}}}}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	secret := "here: -----begin openssh private key----- AAAA"
	for _, stream := range []bool{false, true} {
		resp, body := h.do(t, "POST", "/v1/chat/completions", keyUser2, chat(secret, map[string]any{"stream": stream}))
		e := errorBody(t, body)
		if resp.StatusCode != 400 || e.Code != codePolicy || !strings.Contains(e.Message, "no-credentials") || strings.Contains(strings.ToLower(e.Message), "private key") {
			t.Fatalf("reject rule (stream %v): %d %s", stream, resp.StatusCode, body)
		}
		recs := h.audit.completed(t, resp.Header.Get("X-Request-Id"))
		if got := recs[len(recs)-1].Policy; len(got) != 1 || got[0] != (audit.PolicyHit{Rule: "no-credentials", Action: audit.PolicyReject}) {
			t.Fatalf("audit policy %+v", got)
		}
	}
	// Full-width characters normalised: 違禁詞 is not 违禁词, but ｗ is w.
	resp, body := h.do(t, "POST", "/v1/chat/completions", keyUser2, chat("请问 违禁词 是什么", nil))
	if resp.StatusCode != 200 {
		t.Fatalf("flag rule: %d %s", resp.StatusCode, body)
	}
	recs := h.audit.completed(t, resp.Header.Get("X-Request-Id"))
	if got := recs[len(recs)-1].Policy; len(got) != 1 || got[0].Rule != "watchlist" || got[0].Action != audit.PolicyFlag {
		t.Fatalf("flagged request's audit policy %+v", got)
	}
	if resp, body := h.do(t, "POST", "/v1/chat/completions", keyUser2, chat("hi", map[string]any{"logprobs": true})); resp.StatusCode != 400 || !strings.Contains(errorBody(t, body).Message, "logprobs") {
		t.Fatalf("deny_params: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("glm-4.7-flash", 1000, false)); resp.StatusCode != 400 {
		t.Fatalf("key override max_tokens 500, asked 1000: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("glm-4.7-flash", 400, false)); resp.StatusCode != 200 {
		t.Fatalf("key override max_tokens 500, asked 400: %d %s", resp.StatusCode, body)
	}
	if v := testutil.ToFloat64(h.g.m.policy.WithLabelValues("no-credentials", audit.PolicyReject)); v != 2 {
		t.Fatalf("reject decisions counted %v, want 2", v)
	}
	if v := testutil.ToFloat64(h.g.m.policy.WithLabelValues("watchlist", audit.PolicyFlag)); v != 1 {
		t.Fatalf("flag decisions counted %v, want 1", v)
	}
}
