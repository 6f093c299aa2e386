package stub

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
	"time"
)

// embeddingDim is the length of the stand-in's embedding vectors.
const embeddingDim = 16

// generation is one planned reply.
type generation struct {
	id           string
	model        string
	prompt       int
	tokens       int
	finish       string
	includeUsage bool
}

// plan validates the model and the token budget like vLLM and returns the
// reply to generate; on a problem it has already answered the error.
func (v *VLLM) plan(w http.ResponseWriter, model string, prompt int, maxTokens *int) (generation, bool) {
	if model != "" && model != v.opts.Model {
		writeError(w, http.StatusNotFound, "NotFoundError", "model", fmt.Sprintf("The model `%s` does not exist.", model))
		return generation{}, false
	}
	limit := v.opts.MaxModelLen
	if prompt >= limit {
		writeError(w, http.StatusBadRequest, "BadRequestError", "", fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, your request has %d input tokens. Please reduce the length of the input messages.", limit, prompt))
		return generation{}, false
	}
	g := generation{model: v.opts.Model, prompt: prompt, tokens: v.opts.ReplyTokens, finish: "stop"}
	room := limit - prompt
	if maxTokens != nil {
		if *maxTokens < 1 {
			writeError(w, http.StatusBadRequest, "BadRequestError", "max_tokens", fmt.Sprintf("max_tokens must be at least 1, got %d.", *maxTokens))
			return generation{}, false
		}
		if *maxTokens > room {
			writeError(w, http.StatusBadRequest, "BadRequestError", "max_tokens", fmt.Sprintf(
				"'max_tokens' or 'max_completion_tokens' is too large: %d. This model's maximum context length is %d tokens and your request has %d input tokens (%d > %d - %d).",
				*maxTokens, limit, prompt, *maxTokens, limit, prompt))
			return generation{}, false
		}
		room = *maxTokens
	}
	if room < g.tokens {
		g.tokens, g.finish = room, "length"
	}
	return g, true
}

// generate produces g's tokens one by one, waiting TTFT before the first and
// ITL between the others, and hands each to emit. It stops as soon as the
// request's context ends or emit fails (the client went away).
func (v *VLLM) generate(r *http.Request, g generation, emit func(i int) error) error {
	ctx := r.Context()
	v.mu.Lock()
	v.stats.Running++
	v.stats.PromptTokens += int64(g.prompt)
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.stats.Running--
		v.mu.Unlock()
	}()
	gone := func(done int) error {
		v.mu.Lock()
		v.stats.Cancelled++
		v.mu.Unlock()
		v.log.Info("client went away; generation stopped", "path", r.URL.Path, "tokens", done, "of", g.tokens)
		return errClientGone
	}
	for i := range g.tokens {
		d := v.opts.ITL
		if i == 0 {
			d = v.opts.TTFT
		}
		if !sleepCtx(ctx, d) {
			return gone(i)
		}
		v.mu.Lock()
		v.stats.GenerationTokens++
		v.mu.Unlock()
		if err := emit(i); err != nil {
			return gone(i + 1)
		}
	}
	return nil
}

// sse writes server-sent events, flushing each one.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newSSE(w http.ResponseWriter) *sse {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	return &sse{w: w, rc: http.NewResponseController(w)}
}

func (s *sse) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode chunk: %w", err)
	}
	return s.raw(b)
}

func (s *sse) raw(b []byte) error {
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// nullUsage is what every chunk but the last carries when the client asked
// for stream_options.include_usage.
var nullUsage = json.RawMessage("null")

func chunkUsage(include bool) json.RawMessage {
	if include {
		return nullUsage
	}
	return nil
}

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     any       `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	Usage   json.RawMessage   `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

type completionBody struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   json.RawMessage    `json:"usage,omitempty"`
}

// usageChunk is the final stream chunk sent only on include_usage.
type usageChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []any  `json:"choices"`
	Usage   *usage `json:"usage"`
}

func (v *VLLM) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := decodeBody(r, maxRequestBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "", err.Error())
		return
	}
	v.serveChat(w, r, req)
}

func (v *VLLM) serveChat(w http.ResponseWriter, r *http.Request, req chatRequest) {
	if len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "BadRequestError", "messages", "messages: field required and must not be empty")
		return
	}
	prompt, err := chatPromptTokens(req.Messages)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "messages", err.Error())
		return
	}
	maxTokens := req.MaxCompletionTokens
	if maxTokens == nil {
		maxTokens = req.MaxTokens
	}
	g, ok := v.plan(w, req.Model, prompt, maxTokens)
	if !ok {
		return
	}
	g.id = newID("chatcmpl")
	g.includeUsage = req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	created := time.Now().Unix()

	if !req.Stream {
		if v.generate(r, g, func(int) error { return nil }) != nil {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": g.id, "object": "chat.completion", "created": created, "model": g.model,
			"choices": []map[string]any{{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": ReplyText(g.tokens)},
				"logprobs":      nil,
				"finish_reason": g.finish,
			}},
			"usage": newUsage(g.prompt, g.tokens),
		})
		return
	}

	var s *sse
	chunk := func(d chatDelta, finish *string) chatChunk {
		return chatChunk{ID: g.id, Object: "chat.completion.chunk", Created: created, Model: g.model,
			Choices: []chatChunkChoice{{Delta: d, FinishReason: finish}}, Usage: chunkUsage(g.includeUsage)}
	}
	err = v.generate(r, g, func(i int) error {
		if i == 0 {
			s = newSSE(w)
			empty := ""
			if err := s.send(chunk(chatDelta{Role: "assistant", Content: &empty}, nil)); err != nil {
				return err
			}
		}
		text := word(i)
		var finish *string
		if i == g.tokens-1 {
			finish = &g.finish
		}
		return s.send(chunk(chatDelta{Content: &text}, finish))
	})
	if err != nil {
		return
	}
	v.endStream(s, g, "chat.completion.chunk", created)
}

// endStream sends the usage chunk when asked for, then [DONE].
func (v *VLLM) endStream(s *sse, g generation, object string, created int64) {
	if g.includeUsage {
		if s.send(usageChunk{ID: g.id, Object: object, Created: created, Model: g.model, Choices: []any{}, Usage: newUsage(g.prompt, g.tokens)}) != nil {
			return
		}
	}
	_ = s.raw([]byte("[DONE]"))
}

func (v *VLLM) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := decodeBody(r, maxRequestBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "", err.Error())
		return
	}
	v.serveCompletion(w, r, req)
}

func (v *VLLM) serveCompletion(w http.ResponseWriter, r *http.Request, req completionRequest) {
	items, err := promptInputs(req.Prompt)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "prompt", "prompt: "+err.Error())
		return
	}
	prompt := 0
	for _, n := range items {
		prompt += n
	}
	g, ok := v.plan(w, req.Model, prompt, req.MaxTokens)
	if !ok {
		return
	}
	g.id = newID("cmpl")
	g.includeUsage = req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	created := time.Now().Unix()

	if !req.Stream {
		if v.generate(r, g, func(int) error { return nil }) != nil {
			return
		}
		u, _ := json.Marshal(newUsage(g.prompt, g.tokens))
		writeJSON(w, http.StatusOK, completionBody{ID: g.id, Object: "text_completion", Created: created, Model: g.model,
			Choices: []completionChoice{{Text: ReplyText(g.tokens), FinishReason: &g.finish}}, Usage: u})
		return
	}
	var s *sse
	err = v.generate(r, g, func(i int) error {
		if i == 0 {
			s = newSSE(w)
		}
		var finish *string
		if i == g.tokens-1 {
			finish = &g.finish
		}
		return s.send(completionBody{ID: g.id, Object: "text_completion", Created: created, Model: g.model,
			Choices: []completionChoice{{Text: word(i), FinishReason: finish}}, Usage: chunkUsage(g.includeUsage)})
	})
	if err != nil {
		return
	}
	v.endStream(s, g, "text_completion", created)
}

func (v *VLLM) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if err := decodeBody(r, maxRequestBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "", err.Error())
		return
	}
	items, err := promptInputs(req.Input)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "input", "input: "+err.Error())
		return
	}
	if req.Model != "" && req.Model != v.opts.Model {
		writeError(w, http.StatusNotFound, "NotFoundError", "model", fmt.Sprintf("The model `%s` does not exist.", req.Model))
		return
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		writeError(w, http.StatusBadRequest, "BadRequestError", "encoding_format", "encoding_format must be float or base64")
		return
	}
	data := make([]map[string]any, len(items))
	prompt := 0
	for i, n := range items {
		prompt += n
		vec := embedding(i, n)
		var out any = vec
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			out = base64.StdEncoding.EncodeToString(buf)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": out}
	}
	v.mu.Lock()
	v.stats.PromptTokens += int64(prompt)
	v.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": newID("embd"), "object": "list", "created": time.Now().Unix(), "model": v.opts.Model,
		"data": data, "usage": newUsage(prompt, 0),
	})
}

// embedding is a deterministic unit vector for the i-th input of n tokens.
func embedding(i, n int) []float32 {
	vec := make([]float32, embeddingDim)
	var norm float64
	for j := range vec {
		x := math.Sin(float64(31*i + 7*j + n + 1))
		vec[j] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	for j := range vec {
		vec[j] = float32(float64(vec[j]) / norm)
	}
	return vec
}

// invocations is SageMaker's route: a chat body (messages) or a completion
// body (prompt).
func (v *VLLM) invocations(w http.ResponseWriter, r *http.Request) {
	var fields map[string]json.RawMessage
	if err := decodeBody(r, maxRequestBody, &fields); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "", err.Error())
		return
	}
	raw, _ := json.Marshal(fields)
	switch {
	case fields["messages"] != nil:
		var req chatRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			writeError(w, http.StatusBadRequest, "BadRequestError", "", "invalid JSON: "+err.Error())
			return
		}
		v.serveChat(w, r, req)
	case fields["prompt"] != nil:
		var req completionRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			writeError(w, http.StatusBadRequest, "BadRequestError", "", "invalid JSON: "+err.Error())
			return
		}
		v.serveCompletion(w, r, req)
	default:
		writeError(w, http.StatusBadRequest, "BadRequestError", "", "cannot find a suitable handler for the request: expected messages or prompt")
	}
}

// tokenize answers vLLM's /tokenize for a prompt or messages.
func (v *VLLM) tokenize(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Prompt   *string       `json:"prompt"`
		Messages []chatMessage `json:"messages"`
	}
	if err := decodeBody(r, maxRequestBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "", err.Error())
		return
	}
	var text string
	switch {
	case req.Prompt != nil:
		text = *req.Prompt
	case len(req.Messages) > 0:
		var b strings.Builder
		for i, m := range req.Messages {
			t, err := messageText(m.Content)
			if err != nil {
				writeError(w, http.StatusBadRequest, "BadRequestError", "messages", fmt.Sprintf("messages[%d]: %v", i, err))
				return
			}
			b.WriteString(t)
		}
		text = b.String()
	default:
		writeError(w, http.StatusBadRequest, "BadRequestError", "", "prompt or messages required")
		return
	}
	n := EstimateTokens(text)
	runes := []rune(text)
	tokens := make([]uint32, n)
	for i := range tokens {
		end := min(4*i+4, len(runes))
		h := fnv.New32a()
		if 4*i < end {
			_, _ = h.Write([]byte(string(runes[4*i : end])))
		}
		tokens[i] = h.Sum32() % 151552
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": n, "max_model_len": v.opts.MaxModelLen, "tokens": tokens, "token_strs": nil})
}

// detokenize answers vLLM's /detokenize with words picked by token id.
func (v *VLLM) detokenize(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Tokens []int `json:"tokens"`
	}
	if err := decodeBody(r, maxRequestBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "", err.Error())
		return
	}
	parts := make([]string, len(req.Tokens))
	for i, t := range req.Tokens {
		parts[i] = replyWords[(t%len(replyWords)+len(replyWords))%len(replyWords)]
	}
	writeJSON(w, http.StatusOK, map[string]string{"prompt": strings.Join(parts, " ")})
}
