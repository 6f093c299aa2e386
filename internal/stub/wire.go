package stub

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// replyWords is the vocabulary of the generated text; token i is
// replyWords[i%len(replyWords)], so every reply is deterministic.
var replyWords = [...]string{"The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog."}

// word returns the i-th generated token as it appears in the text: every
// token but the first carries a leading space, so concatenating the streamed
// pieces gives the non-streamed content.
func word(i int) string {
	w := replyWords[i%len(replyWords)]
	if i == 0 {
		return w
	}
	return " " + w
}

// ReplyText is the content the stand-in generates for n tokens.
func ReplyText(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(word(i))
	}
	return b.String()
}

// EstimateTokens is the stand-in's tokenizer: one token per four characters
// (runes) of text, rounded up, at least one.
func EstimateTokens(text string) int {
	n := (utf8.RuneCountInString(text) + 3) / 4
	return max(n, 1)
}

// usage is OpenAI's usage object.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func newUsage(prompt, completion int) *usage {
	return &usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

// streamOptions is the request's stream_options.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatMessage is one request message; content is a string or an array of
// parts, of which only the text parts count.
type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// chatRequest is the part of a chat completion request the stand-in reads.
type chatRequest struct {
	Model               string         `json:"model"`
	Messages            []chatMessage  `json:"messages"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
}

// completionRequest is the part of a (legacy) completion request the
// stand-in reads; prompt is a string, strings, token ids or arrays of them.
type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
}

// embeddingRequest is the part of an embedding request the stand-in reads.
type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
}

// messageText returns the text of a message's content.
func messageText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("content must be a string or an array of parts")
	}
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// chatPromptTokens estimates the prompt of a chat request from the text of
// all its messages.
func chatPromptTokens(msgs []chatMessage) (int, error) {
	var b strings.Builder
	for i, m := range msgs {
		t, err := messageText(m.Content)
		if err != nil {
			return 0, fmt.Errorf("messages[%d]: %w", i, err)
		}
		b.WriteString(t)
	}
	return EstimateTokens(b.String()), nil
}

// promptInputs splits a prompt or input field (string, strings, token ids,
// arrays of token ids) into items and estimates each one's tokens.
func promptInputs(raw json.RawMessage) ([]int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("field required")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []int{EstimateTokens(s)}, nil
	}
	var ss []string
	if err := json.Unmarshal(raw, &ss); err == nil && len(ss) > 0 {
		out := make([]int, len(ss))
		for i, s := range ss {
			out[i] = EstimateTokens(s)
		}
		return out, nil
	}
	var ids []int
	if err := json.Unmarshal(raw, &ids); err == nil && len(ids) > 0 {
		return []int{len(ids)}, nil
	}
	var idss [][]int
	if err := json.Unmarshal(raw, &idss); err == nil && len(idss) > 0 {
		out := make([]int, len(idss))
		for i, ids := range idss {
			out[i] = max(len(ids), 1)
		}
		return out, nil
	}
	return nil, errors.New("must be a string, an array of strings or an array of token ids")
}

// apiError is the body of vLLM's (and OpenAI's) error responses.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    int     `json:"code"`
}

// writeError answers an OpenAI-style error; typ follows vLLM's names
// (BadRequestError, NotFoundError, InternalServerError).
func writeError(w http.ResponseWriter, status int, typ, param, msg string) {
	e := apiError{Message: msg, Type: typ, Code: status}
	if param != "" {
		e.Param = &param
	}
	writeJSON(w, status, map[string]apiError{"error": e})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeBody reads a JSON body into v, limited to limit bytes.
func decodeBody(r *http.Request, limit int64, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("body larger than %d bytes", limit)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

// newID returns an id like vLLM's: prefix, a dash and 32 hex digits.
func newID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}
