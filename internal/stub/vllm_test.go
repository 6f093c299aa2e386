package stub

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func TestModelsList(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{Model: "glm-test"})
	client := newClient(v)
	page, err := client.Models.List(t.Context())
	if err != nil {
		t.Fatalf("list models: %v", err)
	}
	if got := len(page.Data); got != 1 {
		t.Fatalf("got %d models, want 1", got)
	}
	if got, want := page.Data[0].ID, "glm-test"; got != want {
		t.Errorf("model id: got %q, want %q", got, want)
	}
	if got, want := page.Data[0].OwnedBy, "vllm"; got != want {
		t.Errorf("owned_by: got %q, want %q", got, want)
	}
}

func TestChatCompletion(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{})
	client := newClient(v)
	const prompt = "Hello there, how are you today?" // 31 characters: 8 tokens
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}

	tests := []struct {
		name       string
		params     openai.ChatCompletionNewParams
		wantTokens int
		wantFinish string
	}{
		{"default length", openai.ChatCompletionNewParams{Model: DefaultModel, Messages: msgs}, DefaultReplyTokens, "stop"},
		{"max_tokens cuts", openai.ChatCompletionNewParams{Model: DefaultModel, Messages: msgs, MaxTokens: openai.Int(5)}, 5, "length"},
		{"max_completion_tokens cuts", openai.ChatCompletionNewParams{Model: DefaultModel, Messages: msgs, MaxCompletionTokens: openai.Int(3)}, 3, "length"},
		{"max_tokens above reply", openai.ChatCompletionNewParams{Model: DefaultModel, Messages: msgs, MaxTokens: openai.Int(100)}, DefaultReplyTokens, "stop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.Chat.Completions.New(t.Context(), tt.params)
			if err != nil {
				t.Fatalf("chat: %v", err)
			}
			if !strings.HasPrefix(got.ID, "chatcmpl-") || got.Object != "chat.completion" || got.Created == 0 || got.Model != DefaultModel {
				t.Errorf("envelope: id %q object %q created %d model %q", got.ID, got.Object, got.Created, got.Model)
			}
			if len(got.Choices) != 1 {
				t.Fatalf("got %d choices, want 1", len(got.Choices))
			}
			c := got.Choices[0]
			if want := ReplyText(tt.wantTokens); c.Message.Content != want {
				t.Errorf("content: got %q, want %q", c.Message.Content, want)
			}
			if string(c.Message.Role) != "assistant" {
				t.Errorf("role: got %q", c.Message.Role)
			}
			if c.FinishReason != tt.wantFinish {
				t.Errorf("finish_reason: got %q, want %q", c.FinishReason, tt.wantFinish)
			}
			u := got.Usage
			if u.PromptTokens != 8 || u.CompletionTokens != int64(tt.wantTokens) || u.TotalTokens != 8+int64(tt.wantTokens) {
				t.Errorf("usage: got %+v, want 8 + %d", u, tt.wantTokens)
			}
		})
	}
}

// TestChatStreamingWire checks the exact SSE framing: role chunk first,
// finish_reason on the last content chunk, the usage chunk only when asked
// for (and "usage": null on the other chunks then), [DONE] last.
func TestChatStreamingWire(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{})
	for _, include := range []bool{false, true} {
		name := "without include_usage"
		if include {
			name = "with include_usage"
		}
		t.Run(name, func(t *testing.T) {
			body := `{"model":"glm-4.7-flash","messages":[{"role":"user","content":"abcd"}],"max_tokens":4,"stream":true`
			if include {
				body += `,"stream_options":{"include_usage":true}`
			}
			body += "}"
			resp, err := httpClient(v).Post(rootURL(v)+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatalf("post: %v", err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Fatalf("content type %q", ct)
			}
			events := sseEvents(t, resp)
			if events[len(events)-1] != "[DONE]" {
				t.Fatalf("last event %q, want [DONE]", events[len(events)-1])
			}
			events = events[:len(events)-1]
			wantChunks := 1 + 4 // role + 4 tokens
			if include {
				wantChunks++
			}
			if len(events) != wantChunks {
				t.Fatalf("got %d chunks, want %d: %q", len(events), wantChunks, events)
			}
			var text strings.Builder
			for i, e := range events {
				var c map[string]json.RawMessage
				if err := json.Unmarshal([]byte(e), &c); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
				u, hasUsage := c["usage"]
				isUsageChunk := include && i == len(events)-1
				switch {
				case isUsageChunk:
					if string(c["choices"]) != "[]" {
						t.Errorf("usage chunk choices: %s", c["choices"])
					}
					var got usage
					_ = json.Unmarshal(u, &got)
					if want := (usage{PromptTokens: 1, CompletionTokens: 4, TotalTokens: 5}); got != want {
						t.Errorf("usage: got %+v, want %+v", got, want)
					}
					continue
				case include && (!hasUsage || string(u) != "null"):
					t.Errorf("chunk %d: usage %q, want null", i, u)
				case !include && hasUsage:
					t.Errorf("chunk %d carries usage %s without include_usage", i, u)
				}
				var obj struct {
					Object  string `json:"object"`
					Choices []struct {
						Delta struct {
							Role    string  `json:"role"`
							Content *string `json:"content"`
						} `json:"delta"`
						FinishReason *string `json:"finish_reason"`
					} `json:"choices"`
				}
				if err := json.Unmarshal([]byte(e), &obj); err != nil || len(obj.Choices) != 1 {
					t.Fatalf("chunk %d: %v %s", i, err, e)
				}
				if obj.Object != "chat.completion.chunk" {
					t.Errorf("object %q", obj.Object)
				}
				ch := obj.Choices[0]
				if i == 0 && ch.Delta.Role != "assistant" {
					t.Errorf("first chunk role %q, want assistant", ch.Delta.Role)
				}
				if ch.Delta.Content != nil {
					text.WriteString(*ch.Delta.Content)
				}
				last := i == 4
				if last != (ch.FinishReason != nil) || (last && *ch.FinishReason != "stop" && *ch.FinishReason != "length") {
					t.Errorf("chunk %d finish_reason %v", i, ch.FinishReason)
				}
			}
			if got, want := text.String(), ReplyText(4); got != want {
				t.Errorf("streamed text %q, want %q", got, want)
			}
		})
	}
}

// TestChatStreamingClient streams with the official client and checks the
// usage chunk reaches it only when asked for.
func TestChatStreamingClient(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{ITL: time.Millisecond})
	client := newClient(v)
	for _, include := range []bool{false, true} {
		params := openai.ChatCompletionNewParams{
			Model:    DefaultModel,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say something nice")},
		}
		if include {
			params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		}
		stream := client.Chat.Completions.NewStreaming(t.Context(), params)
		var (
			acc         openai.ChatCompletionAccumulator
			usageChunks int
		)
		for stream.Next() {
			c := stream.Current()
			acc.AddChunk(c)
			if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
				usageChunks++
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("include_usage=%v: stream: %v", include, err)
		}
		_ = stream.Close()
		if got, want := acc.Choices[0].Message.Content, ReplyText(DefaultReplyTokens); got != want {
			t.Errorf("include_usage=%v: content %q, want %q", include, got, want)
		}
		wantChunks := 0
		if include {
			wantChunks = 1
		}
		if usageChunks != wantChunks {
			t.Errorf("include_usage=%v: %d usage chunks, want %d", include, usageChunks, wantChunks)
		}
		if include && (acc.Usage.PromptTokens != 5 || acc.Usage.CompletionTokens != DefaultReplyTokens) {
			t.Errorf("usage %+v, want 5 prompt and %d completion tokens", acc.Usage, DefaultReplyTokens)
		}
	}
}

func TestCompletions(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{})
	client := newClient(v)
	params := openai.CompletionNewParams{
		Model:     DefaultModel,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(6),
	}
	got, err := client.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatalf("completion: %v", err)
	}
	if got.Object != "text_completion" || len(got.Choices) != 1 || got.Choices[0].Text != ReplyText(6) || got.Choices[0].FinishReason != "length" {
		t.Errorf("completion: %+v", got)
	}
	if got.Usage.PromptTokens != 4 || got.Usage.CompletionTokens != 6 || got.Usage.TotalTokens != 10 {
		t.Errorf("usage %+v", got.Usage)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Completions.NewStreaming(t.Context(), params)
	var (
		text  strings.Builder
		total int64
	)
	for stream.Next() {
		c := stream.Current()
		for _, ch := range c.Choices {
			text.WriteString(ch.Text)
		}
		if len(c.Choices) == 0 {
			total = c.Usage.TotalTokens
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if text.String() != ReplyText(6) || total != 10 {
		t.Errorf("streamed %q with usage total %d", text.String(), total)
	}
}

func TestEmbeddings(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{})
	client := newClient(v)
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		got, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
			Model:          DefaultModel,
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first input", "second"}},
			EncodingFormat: format,
		})
		if err != nil {
			t.Fatalf("%s: embeddings: %v", format, err)
		}
		if len(got.Data) != 2 || got.Data[1].Index != 1 {
			t.Fatalf("%s: data %+v", format, got.Data)
		}
		if format == openai.EmbeddingNewParamsEncodingFormatFloat && len(got.Data[0].Embedding) != embeddingDim {
			t.Errorf("%s: dimension %d, want %d", format, len(got.Data[0].Embedding), embeddingDim)
		}
		if got.Usage.PromptTokens != 5 { // 3 + 2
			t.Errorf("%s: usage %+v", format, got.Usage)
		}
	}
}

func TestErrors(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{MaxModelLen: 100})
	tests := []struct {
		name, path, body string
		wantStatus       int
		wantType         string
		wantMessage      string
	}{
		{"bad JSON", "/v1/chat/completions", `{"messages":`, 400, "BadRequestError", "invalid JSON"},
		{"no messages", "/v1/chat/completions", `{"model":"glm-4.7-flash"}`, 400, "BadRequestError", "messages"},
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}`, 404, "NotFoundError", "The model `gpt-4` does not exist."},
		{"max_tokens too large", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":100}`, 400, "BadRequestError", "maximum context length is 100 tokens"},
		{"max_tokens zero", "/v1/completions", `{"prompt":"hi","max_tokens":0}`, 400, "BadRequestError", "at least 1"},
		{"prompt too long", "/v1/completions", `{"prompt":"` + strings.Repeat("x", 400) + `"}`, 400, "BadRequestError", "100 input tokens"},
		{"no prompt", "/v1/completions", `{}`, 400, "BadRequestError", "prompt"},
		{"unknown embedding model", "/v1/embeddings", `{"model":"x","input":"a"}`, 404, "NotFoundError", "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, v, tt.path, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d (%v)", status, tt.wantStatus, body)
			}
			e, _ := body["error"].(map[string]any)
			if e == nil || e["type"] != tt.wantType || e["code"] != float64(tt.wantStatus) || !strings.Contains(e["message"].(string), tt.wantMessage) {
				t.Errorf("error body %v, want type %s containing %q", body, tt.wantType, tt.wantMessage)
			}
			if _, ok := e["param"]; !ok {
				t.Errorf("error body lacks param: %v", body)
			}
		})
	}

	t.Run("official client sees 404", func(t *testing.T) {
		client := newClient(v)
		_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "nope", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
			t.Fatalf("got %v, want a 404 *openai.Error", err)
		}
	})

	t.Run("unknown route and wrong method", func(t *testing.T) {
		for path, want := range map[string]int{"/nope": 404, "/v1/chat/completions": 405, "/health": 200} {
			resp, err := httpClient(v).Get(rootURL(v) + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})
}

// TestControlRoutes: vLLM's control and utility routes exist and answer,
// which is why the guard must deny them by default.
func TestControlRoutes(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{APIKey: "sk-only-guards-v1"})
	bodies := map[string]string{
		"/tokenize":       `{"prompt":"hello world"}`,
		"/detokenize":     `{"tokens":[1,2,3]}`,
		"/pause":          `{}`,
		"/resume":         `{}`,
		"/sleep":          `{}`,
		"/wake_up":        `{}`,
		"/collective_rpc": `{"method":"x"}`,
		"/update_weights": `{}`,
		"/invocations":    `{"messages":[{"role":"user","content":"hi"}]}`,
	}
	for path, body := range bodies {
		status, out := post(t, v, path, body)
		if status != http.StatusOK {
			t.Errorf("POST %s without a key: %d %v, want 200 (vLLM leaves it open)", path, status, out)
		}
	}
	if _, out := post(t, v, "/tokenize", `{"prompt":"hello world"}`); out["count"] != float64(3) {
		t.Errorf("tokenize: %v", out)
	}
	for _, path := range []string{"/load", "/metrics", "/version", "/is_sleeping", "/is_paused"} {
		resp, err := httpClient(v).Get(rootURL(v) + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	// /v1 needs the key, exactly like vLLM's --api-key.
	if status, _ := post(t, v, "/v1/completions", `{"prompt":"hi"}`); status != http.StatusUnauthorized {
		t.Errorf("/v1 without key: %d, want 401", status)
	}
	client := newClient(v, option.WithAPIKey("sk-only-guards-v1"))
	if _, err := client.Models.List(t.Context()); err != nil {
		t.Errorf("/v1 with key: %v", err)
	}
	if got := v.Stats().Paths["/pause"]; got != 1 {
		t.Errorf("stats paths /pause = %d, want 1", got)
	}
}

func TestFailAfter(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{FailAfter: 2})
	var codes []int
	for range 3 {
		resp, err := httpClient(v).Get(rootURL(v) + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 503 {
		t.Errorf("health codes %v, want [200 200 503]", codes)
	}
	if status, _ := post(t, v, "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`); status != http.StatusInternalServerError {
		t.Errorf("chat on a dead engine: %d, want 500", status)
	}
}

func TestExitAfter(t *testing.T) {
	events := filepath.Join(t.TempDir(), "events")
	v := NewVLLM(VLLMOptions{Listen: "127.0.0.1:0", ExitAfter: 150 * time.Millisecond, ExitCode: 3, EventsFile: events})
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- v.Run(context.Background()) }()
	select {
	case err := <-done:
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != 3 {
			t.Fatalf("run: %v, want *ExitError code 3", err)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("exited after %s, before ExitAfter", d)
		}
		b, err := os.ReadFile(events)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 || f[2] != strconv.Itoa(os.Getpid()) {
				t.Errorf("event line %q", line)
				continue
			}
			names = append(names, f[0])
		}
		if got := strings.Join(names, " "); got != "start ready crash" {
			t.Errorf("events %q, want start ready crash", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no simulated crash")
	}
}

// TestClientDisconnect: when the client goes away mid-stream the generation
// stops (no tokens are produced for nobody).
func TestClientDisconnect(t *testing.T) {
	v := mustStartVLLM(t, VLLMOptions{ITL: 10 * time.Millisecond, ReplyTokens: 100000, MaxModelLen: 1 << 20})
	ctx, cancel := context.WithCancel(t.Context())
	client := newClient(v)
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: DefaultModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("go on forever")}})
	for i := 0; i < 4 && stream.Next(); i++ {
	}
	if got := v.Stats().Running; got != 1 {
		t.Fatalf("running generations %d, want 1", got)
	}
	cancel()
	_ = stream.Close()
	waitFor(t, 5*time.Second, "the generation to stop", func() bool {
		s := v.Stats()
		return s.Running == 0 && s.Cancelled == 1
	})
	produced := v.Stats().GenerationTokens
	if produced > 1000 {
		t.Errorf("%d tokens generated before stopping", produced)
	}
}

// TestTiming: TTFT and ITL shape a stream.
func TestTiming(t *testing.T) {
	const ttft, itl = 100 * time.Millisecond, 20 * time.Millisecond
	v := mustStartVLLM(t, VLLMOptions{TTFT: ttft, ITL: itl})
	start := time.Now()
	client := newClient(v)
	stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
		Model: DefaultModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, MaxTokens: openai.Int(5)})
	var first time.Duration
	for stream.Next() {
		if first == 0 {
			first = time.Since(start)
		}
	}
	total := time.Since(start)
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if first < ttft {
		t.Errorf("first chunk after %s, want at least %s", first, ttft)
	}
	if want := ttft + 4*itl; total < want {
		t.Errorf("stream took %s, want at least %s", total, want)
	}
}

// BenchmarkChat measures the stand-in's own cost per non-streamed chat over
// loopback HTTP, so guard benchmarks can tell it is not their bottleneck.
func BenchmarkChat(b *testing.B) {
	v := mustStartVLLM(b, VLLMOptions{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	url := rootURL(v) + "/v1/chat/completions"
	const body = `{"model":"glm-4.7-flash","messages":[{"role":"user","content":"Hello there"}],"max_tokens":16}`
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
