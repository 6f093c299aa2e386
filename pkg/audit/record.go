// Package audit writes, verifies and summarises glmctl's tamper-evident audit
// trail: one JSON object per line, chained by SHA-256 (or HMAC-SHA-256) hashes.
package audit

import "time"

// ErrorIncomplete is the error of a completed record whose answer the model
// server cut (its status is that of the answer's start, often 200).
const ErrorIncomplete = "incomplete"

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
	// Policy lists the request policy's decisions: every rule that
	// matched, with its action (reject or flag), in the policy's order.
	Policy       []PolicyHit `json:"policy,omitempty"`
	UserAgent    string      `json:"user_agent,omitempty"`
	Action       string      `json:"action,omitempty"` // admin records: what was done
	Target       string      `json:"target,omitempty"` // admin records: to what
	RequestBody  string      `json:"request_body,omitempty"`
	ResponseBody string      `json:"response_body,omitempty"`
	Prev         string      `json:"prev"`
	Hash         string      `json:"hash"`
}

// Policy actions of a PolicyHit.
const (
	PolicyReject = "reject" // the request was refused (400) for this rule
	PolicyFlag   = "flag"   // the request was served, marked
)

// PolicyHit is one decision of the request policy: a rule (or built-in
// check such as max_tokens) that matched the request, and what it did.
// Never the matched text.
type PolicyHit struct {
	Rule   string `json:"rule"`
	Action string `json:"action"` // reject | flag
}
