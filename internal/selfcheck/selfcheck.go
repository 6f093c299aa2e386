// Package selfcheck probes a running glmctl the way the tutorial's
// validation script did, and more (`glmctl check --live`, DESIGN.md "check
// --live"): no key and a wrong key are refused with 401, a working key gets
// a real completion, a burst on a temporary rpm-1 key gets 429 with
// Retry-After, the audit trail recorded the probes and verifies, /metrics
// answers, and the upstream cannot be reached around the guard.
//
// The temporary key is added to the keys and limits files through the same
// locked, atomic writers as `glmctl keys`, expires in minutes, and is
// removed again; no real user's budget is touched. Without a working key
// from the caller, the right-key check runs on that temporary key too.
//
// A check that cannot run is skipped, and a skip never counts as a pass:
// only a skip marked Optional — the config leaves the checked feature out —
// is nothing to worry about (Passed tells).
package selfcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/audit"
)

// Statuses of a check.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// Names of the checks, in the order Run makes them.
const (
	CheckNoKey    = "no key → 401"
	CheckWrongKey = "wrong key → 401"
	CheckRightKey = "right key → 200 with a completion"
	CheckBurst    = "burst → 429 with Retry-After"
	CheckAudit    = "audit log recorded the probes and verifies"
	CheckMetrics  = "/metrics answers"
	CheckUpstream = "upstream refuses direct connections from outside loopback"
)

// Result is the outcome of one check.
type Result struct {
	Name   string `json:"name"`
	Status string `json:"status"` // pass | fail | skip
	Detail string `json:"detail,omitempty"`
	// Optional marks a skip that does not count against the service: the
	// config leaves out what the check is about (no audit or metrics
	// block, no limits file), or nothing could reach it anyway. Any other
	// skip means the check could not be made here.
	Optional bool `json:"optional,omitempty"`
}

// Passed reports whether results hold no failure and no skip that counts,
// and lists the skips that count.
func Passed(results []Result) (ok bool, skipped []Result) {
	ok = true
	for _, r := range results {
		switch {
		case r.Status == Fail:
			ok = false
		case r.Status == Skip && !r.Optional:
			ok = false
			skipped = append(skipped, r)
		}
	}
	return ok, skipped
}

// String renders the check as one ✅/❌/⚠ line.
func (r Result) String() string {
	switch r.Status {
	case Pass:
		if r.Detail == "" {
			return "✅ " + r.Name
		}
		return "✅ " + r.Name + " (" + r.Detail + ")"
	case Fail:
		return "❌ " + r.Name + ": " + r.Detail
	}
	return "⚠ skipped: " + r.Name + ": " + r.Detail
}

// Options configure Run.
type Options struct {
	// URL is the guard's root, without /v1.
	URL string
	// Key is a working API key; "" runs the right-key check on the
	// temporary key (which needs Config with guard.keys_file).
	Key string
	// Config is the service's config (nil: only the HTTP checks run).
	Config *config.Config
	// Client makes the requests (default: 60 s timeout).
	Client *http.Client
	// ReloadWait bounds the wait for the guard to load the temporary key
	// (default 15 s).
	ReloadWait time.Duration
}

// probe is one request the checks made, for the audit check.
type probe struct {
	id       string
	status   int
	admitted bool // forwarded upstream: a received record is due too
}

// runner carries the state of one Run.
type runner struct {
	opts   Options
	base   string
	model  string
	probes []probe
	// unreachable is the first connection error, if any.
	unreachable error
}

// Run makes every check and returns their results in order. A check that
// cannot run here is skipped with the reason, never failed.
func Run(ctx context.Context, opts Options) []Result {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 60 * time.Second}
	}
	if opts.ReloadWait == 0 {
		opts.ReloadWait = 15 * time.Second
	}
	r := &runner{opts: opts, base: strings.TrimSuffix(strings.TrimSuffix(opts.URL, "/"), "/v1")}
	first := r.refused(ctx, CheckNoKey, "")
	if r.unreachable != nil {
		// Nothing answers: say so once, touch no file, and still look at
		// what can be checked without the guard.
		down := fmt.Sprintf("the guard at %s is unreachable: %v (is glmctl up running? glmctl status)", r.base, r.unreachable)
		return []Result{
			{Name: CheckNoKey, Status: Fail, Detail: down},
			{Name: CheckWrongKey, Status: Skip, Detail: "guard unreachable"},
			{Name: CheckRightKey, Status: Skip, Detail: "guard unreachable"},
			{Name: CheckBurst, Status: Skip, Detail: "guard unreachable: no temporary key created"},
			{Name: CheckAudit, Status: Skip, Detail: "guard unreachable: no probe to look for"},
			r.metrics(ctx),
			r.upstream(),
		}
	}
	wrong := r.refused(ctx, CheckWrongKey, "sk-glmctl-check-wrong-key-0000000000000000")
	var right, burst Result
	if opts.Key != "" {
		right, burst = r.rightKey(ctx), r.burst(ctx)
	} else {
		right, burst = r.withTempKey(ctx)
	}
	return []Result{first, wrong, right, burst, r.audit(ctx), r.metrics(ctx), r.upstream()}
}

// chat posts a small chat completion with key ("" for none). Without a
// model name from /v1/models the request names none: vLLM then answers
// with the one model it serves.
func (r *runner) chat(ctx context.Context, key string, maxTokens int) (*http.Response, []byte, error) {
	msg := map[string]any{
		"messages":   []map[string]string{{"role": "user", "content": "Reply with one word: ok"}},
		"max_tokens": maxTokens,
	}
	if r.model != "" {
		msg["model"] = r.model
	}
	body, _ := json.Marshal(msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "glmctl-check")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	admitted := resp.StatusCode < 400 || (resp.Header.Get("X-Ratelimit-Limit-Requests") != "" && resp.StatusCode != http.StatusTooManyRequests)
	r.probes = append(r.probes, probe{id: resp.Header.Get("X-Request-Id"), status: resp.StatusCode, admitted: admitted})
	return resp, b, nil
}

// errorMessage extracts an OpenAI-style error message from a body.
func errorMessage(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func (r *runner) refused(ctx context.Context, name, key string) Result {
	resp, b, err := r.chat(ctx, key, 1)
	if err != nil {
		r.unreachable = err
		return Result{Name: name, Status: Fail, Detail: fmt.Sprintf("request failed: %v", err)}
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return Result{Name: name, Status: Fail, Detail: fmt.Sprintf("got %d, want 401: %s", resp.StatusCode, errorMessage(b))}
	}
	return Result{Name: name, Status: Pass}
}

func (r *runner) rightKey(ctx context.Context) Result {
	// The model name, from /v1/models (the first one served).
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/v1/models", nil); err == nil {
		req.Header.Set("Authorization", "Bearer "+r.opts.Key)
		if resp, err := r.opts.Client.Do(req); err == nil {
			var models struct {
				Data []struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&models) == nil && len(models.Data) > 0 {
				r.model = models.Data[0].ID
			}
			resp.Body.Close()
			r.probes = append(r.probes, probe{id: resp.Header.Get("X-Request-Id"), status: resp.StatusCode, admitted: resp.StatusCode == http.StatusOK})
		}
	}
	resp, b, err := r.chat(ctx, r.opts.Key, 16)
	if err != nil {
		return Result{Name: CheckRightKey, Status: Fail, Detail: fmt.Sprintf("request failed: %v", err)}
	}
	return completion(resp, b, "")
}

// completion judges the answer to the right-key request.
func completion(resp *http.Response, b []byte, via string) Result {
	if resp.StatusCode != http.StatusOK {
		return Result{Name: CheckRightKey, Status: Fail, Detail: fmt.Sprintf("got %d, want 200: %s", resp.StatusCode, errorMessage(b))}
	}
	var cc struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &cc); err != nil {
		return Result{Name: CheckRightKey, Status: Fail, Detail: fmt.Sprintf("200 but not a chat completion: %v", err)}
	}
	if len(cc.Choices) == 0 || strings.TrimSpace(cc.Choices[0].Message.Content) == "" {
		return Result{Name: CheckRightKey, Status: Fail, Detail: "200 but the completion is empty"}
	}
	if cc.Usage == nil || cc.Usage.CompletionTokens == 0 {
		return Result{Name: CheckRightKey, Status: Fail, Detail: "200 but no usage in the response"}
	}
	return Result{Name: CheckRightKey, Status: Pass, Detail: fmt.Sprintf("%smodel %s, %d+%d tokens", via, cc.Model, cc.Usage.PromptTokens, cc.Usage.CompletionTokens)}
}

// tempKeyTTL is how long a temporary key could work if it were not removed.
const tempKeyTTL = 10 * time.Minute

// burst makes the burst check on a temporary rpm-1 key (a key was given:
// the right-key check used it).
func (r *runner) burst(ctx context.Context) Result {
	cfg := r.opts.Config
	switch {
	case cfg == nil || cfg.Guard == nil:
		return Result{Name: CheckBurst, Status: Skip, Detail: "no config with a guard block: the temporary key cannot be created"}
	case cfg.Guard.LimitsFile == "":
		return Result{Name: CheckBurst, Status: Skip, Optional: true, Detail: "no guard.limits_file: no per-key limits to check, and a temporary key cannot get its own rpm 1"}
	}
	tk, err := newTempKey(cfg.Guard.KeysFile, cfg.Guard.LimitsFile, 1, tempKeyTTL, time.Now())
	if err != nil {
		return Result{Name: CheckBurst, Status: Skip, Detail: fmt.Sprintf("cannot create the temporary key (run as the keys file's owner): %v", err)}
	}
	var res Result
	resp, b, fail := r.firstAnswer(ctx, tk, CheckBurst)
	switch {
	case fail != nil:
		res = *fail
	case resp.StatusCode == http.StatusTooManyRequests:
		res = r.retryAfter(resp, b, 0)
	default:
		res = r.burstWith(ctx, tk, 1)
	}
	return tk.dropInto(res)
}

// withTempKey makes the right-key and the burst checks when no key was
// given: one temporary key (rpm 1 where there is a limits file, expiring in
// minutes, removed afterwards) gets the completion with its one request a
// minute, and its next requests must be refused with 429.
func (r *runner) withTempKey(ctx context.Context) (right, burst Result) {
	cfg := r.opts.Config
	if cfg == nil || cfg.Guard == nil || cfg.Guard.KeysFile == "" {
		why := "no --key given (or GLMCTL_KEY), and no config with guard.keys_file to create a temporary key in: pass --key KEY, or -c the service's config"
		return Result{Name: CheckRightKey, Status: Fail, Detail: why},
			Result{Name: CheckBurst, Status: Skip, Detail: "no config with a guard block: the temporary key cannot be created"}
	}
	tk, err := newTempKey(cfg.Guard.KeysFile, cfg.Guard.LimitsFile, 1, tempKeyTTL, time.Now())
	if err != nil {
		why := fmt.Sprintf("no --key given (or GLMCTL_KEY), and the temporary key could not be created (run as the keys file's owner, or pass --key KEY): %v", err)
		return Result{Name: CheckRightKey, Status: Fail, Detail: why},
			Result{Name: CheckBurst, Status: Skip, Detail: "no temporary key: " + err.Error()}
	}
	resp, b, fail := r.firstAnswer(ctx, tk, CheckRightKey)
	if fail != nil {
		right = *fail
	} else {
		right = completion(resp, b, fmt.Sprintf("temporary key %s, ", tk.name))
	}
	switch {
	case cfg.Guard.LimitsFile == "":
		burst = Result{Name: CheckBurst, Status: Skip, Optional: true, Detail: "no guard.limits_file: no per-key limits to check, and a temporary key cannot get its own rpm 1"}
	case fail != nil:
		burst = Result{Name: CheckBurst, Status: Skip, Detail: "the temporary key was not admitted: " + fail.Detail}
	case resp.StatusCode == http.StatusTooManyRequests:
		burst = r.retryAfter(resp, b, 0)
	default:
		burst = r.burstWith(ctx, tk, 1)
	}
	burst = tk.dropInto(burst)
	return right, burst
}

// firstAnswer sends requests with the temporary key until the guard's hot
// reload knows it (401 until then) and returns the first other answer, or
// the failed result of the check named name.
func (r *runner) firstAnswer(ctx context.Context, tk *tempKey, name string) (*http.Response, []byte, *Result) {
	deadline := time.Now().Add(r.opts.ReloadWait)
	for {
		resp, b, err := r.chat(ctx, tk.secret, 16)
		if err != nil {
			return nil, nil, &Result{Name: name, Status: Fail, Detail: fmt.Sprintf("request failed: %v", err)}
		}
		if resp.StatusCode != http.StatusUnauthorized {
			return resp, b, nil
		}
		if time.Now().After(deadline) {
			return nil, nil, &Result{Name: name, Status: Fail, Detail: fmt.Sprintf("the guard did not load the temporary key within %s: is it watching %s?", r.opts.ReloadWait, tk.keysFile)}
		}
		select {
		case <-ctx.Done():
			return nil, nil, &Result{Name: name, Status: Fail, Detail: ctx.Err().Error()}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// burstWith sends quick requests on the rpm-1 temporary key, of which spent
// were already admitted, until one is refused with 429.
func (r *runner) burstWith(ctx context.Context, tk *tempKey, spent int) Result {
	for i := spent; i < spent+5; i++ {
		resp, b, err := r.chat(ctx, tk.secret, 1)
		if err != nil {
			return Result{Name: CheckBurst, Status: Fail, Detail: fmt.Sprintf("request failed: %v", err)}
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			return r.retryAfter(resp, b, i)
		}
	}
	return Result{Name: CheckBurst, Status: Fail, Detail: fmt.Sprintf("%d quick requests on an rpm-1 key, no 429: are per-key limits applied?", spent+5)}
}

func (r *runner) retryAfter(resp *http.Response, b []byte, n int) Result {
	ra := resp.Header.Get("Retry-After")
	if ra == "" {
		return Result{Name: CheckBurst, Status: Fail, Detail: "429 without Retry-After"}
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Code != "rate_limit_exceeded" {
		return Result{Name: CheckBurst, Status: Fail, Detail: fmt.Sprintf("429 body is not an OpenAI rate_limit_exceeded error: %s", errorMessage(b))}
	}
	return Result{Name: CheckBurst, Status: Pass, Detail: fmt.Sprintf("request %d of an rpm-1 key, Retry-After: %s: %s", n+1, ra, errorMessage(b))}
}

func (r *runner) audit(ctx context.Context) Result {
	cfg := r.opts.Config
	if cfg == nil {
		return Result{Name: CheckAudit, Status: Skip, Detail: "no config: the audit log is unknown"}
	}
	if cfg.Audit == nil {
		return Result{Name: CheckAudit, Status: Skip, Optional: true, Detail: "no audit block in the config"}
	}
	files, err := audit.Files(cfg.Audit.Path)
	if err != nil {
		return Result{Name: CheckAudit, Status: Fail, Detail: err.Error()}
	}
	if len(files) == 0 {
		return Result{Name: CheckAudit, Status: Fail, Detail: "no audit log at " + cfg.Audit.Path}
	}
	if f, err := os.Open(files[len(files)-1]); err != nil {
		return Result{Name: CheckAudit, Status: Skip, Detail: fmt.Sprintf("cannot read the audit log here: %v (run as its owner)", err)}
	} else {
		f.Close()
	}
	want := map[string]probe{}
	for _, p := range r.probes {
		if p.id != "" {
			want[p.id] = p
		}
	}
	if len(want) == 0 {
		return Result{Name: CheckAudit, Status: Skip, Detail: "no probe got an x-request-id"}
	}
	// Completed records are written as the response ends: give them a moment.
	var missing []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		missing = missing[:0]
		files, _ = audit.Files(cfg.Audit.Path)
		recs, err := audit.Tail(files, 4*len(want)+1000, audit.Filter{})
		if err != nil {
			return Result{Name: CheckAudit, Status: Fail, Detail: fmt.Sprintf("read audit log: %v", err)}
		}
		seen := map[string]map[string]int{} // id -> stage -> status
		for _, rec := range recs {
			if _, ok := want[rec.RequestID]; ok {
				if seen[rec.RequestID] == nil {
					seen[rec.RequestID] = map[string]int{}
				}
				seen[rec.RequestID][rec.Stage] = rec.Status
			}
		}
		for id, p := range want {
			st, ok := seen[id][audit.StageCompleted]
			switch {
			case !ok:
				missing = append(missing, fmt.Sprintf("%s: no completed record (%d)", id, p.status))
			case st != p.status:
				missing = append(missing, fmt.Sprintf("%s: completed with status %d, the client got %d", id, st, p.status))
			}
			if _, ok := seen[id][audit.StageReceived]; p.admitted && !ok {
				missing = append(missing, fmt.Sprintf("%s: no received record", id))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		return Result{Name: CheckAudit, Status: Fail, Detail: strings.Join(missing, "; ")}
	}
	var vopts audit.VerifyOptions
	if cfg.Audit.HMACKeyFile != "" {
		if k, err := audit.ReadHMACKey(cfg.Audit.HMACKeyFile); err == nil {
			vopts.HMACKey = k
		}
	}
	rep, err := audit.Verify(files, vopts)
	if err != nil {
		return Result{Name: CheckAudit, Status: Fail, Detail: fmt.Sprintf("verify: %v", err)}
	}
	if !rep.Intact() {
		return Result{Name: CheckAudit, Status: Fail, Detail: fmt.Sprintf("the hash chain is broken: %s (glmctl audit verify for all)", rep.Problems[0])}
	}
	return Result{Name: CheckAudit, Status: Pass, Detail: fmt.Sprintf("%d probes recorded, %d records verified", len(want), rep.Records)}
}

func (r *runner) metrics(ctx context.Context) Result {
	cfg := r.opts.Config
	if cfg == nil {
		return Result{Name: CheckMetrics, Status: Skip, Detail: "no config: the metrics address is unknown"}
	}
	if cfg.Metrics == nil {
		return Result{Name: CheckMetrics, Status: Skip, Optional: true, Detail: "no metrics block in the config"}
	}
	host, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		return Result{Name: CheckMetrics, Status: Fail, Detail: fmt.Sprintf("metrics listen %q: %v", cfg.Metrics.Listen, err)}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Result{Name: CheckMetrics, Status: Fail, Detail: err.Error()}
	}
	if f := cfg.Metrics.BearerTokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return Result{Name: CheckMetrics, Status: Skip, Detail: fmt.Sprintf("cannot read the metrics bearer token: %v", err)}
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		return Result{Name: CheckMetrics, Status: Fail, Detail: fmt.Sprintf("GET %s: %v", url, err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("glmctl_")) {
		return Result{Name: CheckMetrics, Status: Fail, Detail: fmt.Sprintf("GET %s: %d, %d bytes without glmctl_ metrics", url, resp.StatusCode, len(b))}
	}
	return Result{Name: CheckMetrics, Status: Pass, Detail: url}
}
