package guard

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/glmctl/glmctl/internal/config"
)

func sdk(h *harness, key string) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(h.url+"/v1/"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	)
}

func TestOpenAIClientEndToEnd(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:     "glm-4.7-flash",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
		MaxTokens: openai.Int(50),
	}

	t.Run("chat", func(t *testing.T) {
		var raw *http.Response
		c := sdk(h, keyUser2)
		res, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Choices[0].Message.Content; got != "Hello there" {
			t.Fatalf("content = %q", got)
		}
		if res.Usage.PromptTokens != promptTokens || res.Usage.CompletionTokens != completionTokens {
			t.Fatalf("usage = %+v", res.Usage)
		}
		for _, hd := range []string{"X-Request-Id", "X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"} {
			if raw.Header.Get(hd) == "" {
				t.Errorf("header %s missing", hd)
			}
		}
		req, _ := h.up.lastRequest()
		if req.Header.Get("Authorization") != "" {
			t.Fatal("the client's key reached the upstream")
		}
		recs := h.audit.completed(t, raw.Header.Get("X-Request-Id"))
		if len(recs) != 2 || recs[0].Stage != "received" || recs[1].Stage != "completed" {
			t.Fatalf("audit records = %+v", recs)
		}
		if r := recs[1]; r.Key != "user2" || r.Status != 200 || r.PromptTokens != promptTokens || r.CompletionTokens != completionTokens || r.BytesOut == 0 {
			t.Fatalf("completed record = %+v", r)
		}
	})

	t.Run("stream without include_usage hides the usage chunk", func(t *testing.T) {
		c := sdk(h, keyUser2)
		var raw *http.Response
		st := c.Chat.Completions.NewStreaming(ctx, params, option.WithResponseInto(&raw))
		var text strings.Builder
		sawUsage := false
		for st.Next() {
			ch := st.Current()
			if len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
			if ch.Usage.TotalTokens > 0 || len(ch.Choices) == 0 {
				sawUsage = true
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != "Hello there" || sawUsage {
			t.Fatalf("text %q, usage chunk seen %v", text.String(), sawUsage)
		}
		_, body := h.up.lastRequest()
		so, _ := body["stream_options"].(map[string]any)
		if so["include_usage"] != true {
			t.Fatalf("upstream was not asked for usage: %v", body)
		}
		if raw.Header.Get("X-Ratelimit-Remaining-Requests") == "" {
			t.Fatal("no rate limit headers on a stream")
		}
		recs := h.audit.completed(t, raw.Header.Get("X-Request-Id"))
		if len(recs) != 2 || recs[1].CompletionTokens != completionTokens || !recs[1].Stream || recs[1].TTFTMS <= 0 {
			t.Fatalf("stream audit = %+v", recs)
		}
	})

	t.Run("stream with include_usage", func(t *testing.T) {
		c := sdk(h, keyUser2)
		p := params
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		st := c.Chat.Completions.NewStreaming(ctx, p)
		var usage openai.CompletionUsage
		for st.Next() {
			if u := st.Current().Usage; u.TotalTokens > 0 {
				usage = u
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if usage.PromptTokens != promptTokens || usage.CompletionTokens != completionTokens {
			t.Fatalf("usage = %+v", usage)
		}
	})

	t.Run("401 is the SDK's typed error", func(t *testing.T) {
		c := sdk(h, "sk-wrong-0123456789abcdefghij")
		_, err := c.Chat.Completions.New(ctx, params)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("err = %v", err)
		}
		if apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" || apiErr.Type != "invalid_request_error" {
			t.Fatalf("got %d %s %s", apiErr.StatusCode, apiErr.Code, apiErr.Type)
		}
		if !strings.Contains(apiErr.Message, "sk-wr…ghij") || strings.Contains(apiErr.Message, "0123456789") {
			t.Fatalf("message %q should show the masked key only", apiErr.Message)
		}
	})

	t.Run("429 is the SDK's typed error", func(t *testing.T) {
		c := sdk(h, keyLimit) // rpm 5
		var apiErr *openai.Error
		for i := 0; i < 10 && apiErr == nil; i++ {
			_, err := c.Chat.Completions.New(ctx, params)
			errors.As(err, &apiErr)
		}
		if apiErr == nil {
			t.Fatal("no 429 in 10 requests at rpm 5")
		}
		if apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "requests" {
			t.Fatalf("got %d %s %s", apiErr.StatusCode, apiErr.Code, apiErr.Type)
		}
		if apiErr.Response.Header.Get("Retry-After") == "" || apiErr.Response.Header.Get("X-Ratelimit-Reset-Requests") == "" {
			t.Fatalf("headers = %v", apiErr.Response.Header)
		}
	})
}

// TestTutorialChecks runs the tutorial's validation script's checks.
func TestTutorialChecks(t *testing.T) {
	h := newHarness(t)
	if resp, _ := h.do(t, "POST", "/v1/chat/completions", "", chatBody("glm-4.7-flash", 10, false)); resp.StatusCode != 401 {
		t.Fatalf("no key: %d", resp.StatusCode)
	}
	if resp, _ := h.do(t, "POST", "/v1/chat/completions", "sk-nope-nope-nope-nope", chatBody("glm-4.7-flash", 10, false)); resp.StatusCode != 401 {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	if resp, b := h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("glm-4.7-flash", 10, false)); resp.StatusCode != 200 {
		t.Fatalf("right key: %d %s", resp.StatusCode, b)
	}
	got429 := 0
	for i := 0; i < 10; i++ {
		resp, _ := h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("glm-4.7-flash", 10, false))
		if resp.StatusCode == 429 {
			got429++
		}
	}
	if got429 != 5 {
		t.Fatalf("429s in a burst of 10 at rpm 5 = %d, want 5", got429)
	}
	if h.audit.len() == 0 {
		t.Fatal("audit log empty")
	}
}

// TestOpenAIClientSeesCutStream (issue 15): the official Go SDK, reading a
// stream the model server cut, gets an error naming what happened instead
// of a silent end.
func TestOpenAIClientSeesCutStream(t *testing.T) {
	up := cuttingUpstream(t, 3)
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.Upstream = up })
	c := sdk(h, keyUser1)
	st := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "glm-4.7-flash",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
	})
	chunks := 0
	for st.Next() {
		chunks++
	}
	err := st.Err()
	if err == nil || !strings.Contains(err.Error(), "ended the stream early") {
		t.Fatalf("after %d chunks the SDK reported %v, want the guard's stream error", chunks, err)
	}
	if chunks != 3 {
		t.Fatalf("%d chunks before the error, want 3", chunks)
	}
}
