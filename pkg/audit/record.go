// Package audit writes, verifies and summarises glmctl's tamper-evident audit
// trail: one JSON object per line, chained by SHA-256 (or HMAC-SHA-256) hashes.
package audit

import "time"

// Stages of a record.
const (
	StageReceived  = "received"  // the guard saw the request (before forwarding)
	StageCompleted = "completed" // the response ended, however it ended
	StageAdmin     = "admin"     // an administrative act (key created, reload, restart…)
)

// Record is one line of the audit log. Field names are part of the product
// contract (DESIGN.md "Audit record"); never add a field holding a secret.
type Record struct {
	Time             time.Time `json:"time"`
	Stage            string    `json:"stage"`
	RequestID        string    `json:"request_id,omitempty"`
	Key              string    `json:"key,omitempty"`  // key name, never the secret
	Role             string    `json:"role,omitempty"` // user | admin
	Client           string    `json:"client,omitempty"`
	Method           string    `json:"method,omitempty"`
	Path             string    `json:"path,omitempty"`
	Model            string    `json:"model,omitempty"`
	Stream           bool      `json:"stream,omitempty"`
	Status           int       `json:"status,omitempty"`
	Error            string    `json:"error,omitempty"`
	PromptTokens     int       `json:"prompt_tokens,omitempty"`
	CompletionTokens int       `json:"completion_tokens,omitempty"`
	LatencyMS        float64   `json:"latency_ms,omitempty"`
	TTFTMS           float64   `json:"ttft_ms,omitempty"`
	BytesIn          int64     `json:"bytes_in,omitempty"`
	BytesOut         int64     `json:"bytes_out,omitempty"`
	Limit            string    `json:"limit,omitempty"` // which limit rejected it
	UserAgent        string    `json:"user_agent,omitempty"`
	Action           string    `json:"action,omitempty"` // admin records: what was done
	Target           string    `json:"target,omitempty"` // admin records: to what
	RequestBody      string    `json:"request_body,omitempty"`
	ResponseBody     string    `json:"response_body,omitempty"`
	Prev             string    `json:"prev"`
	Hash             string    `json:"hash"`
}
