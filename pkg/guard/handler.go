package guard

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/glmctl/glmctl/pkg/audit"
	"github.com/glmctl/glmctl/pkg/keys"
)

// exchange is the per-request state shared by the chain, the proxy hooks and
// the response recorder. All of it is touched from the request's goroutine.
type exchange struct {
	id     string
	start  time.Time
	path   string
	key    *keys.Key
	model  string
	stream bool
	// hideUsage: the client did not ask for the stream's usage chunk; the
	// guard asked upstream for it and removes it on the way back.
	hideUsage bool
	bytesIn   int64
	body      []byte // the request body to forward

	admitted bool
	ticket   Ticket
	reason   string // limit or check that refused the request
	errMsg   string
	// route is the metrics' route label when it is not the routed path
	// ("/health"); authFailure the auth failure reason, if any.
	route       string
	authFailure string

	// reqBody is the client's body, kept for the received record when
	// the audit level stores request bodies; keepResp asks the response
	// readers to keep the first maxAuditBody bytes in respBody.
	reqBody  []byte
	keepResp bool
	respBody []byte

	usageSeen        bool
	promptTokens     int64
	completionTokens int64
	upstreamDone     bool // the upstream body was read to its end
	upstreamStatus   int
}

type ctxKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(ctxKey{}).(*exchange)
	return x
}

// recorder wraps the client's ResponseWriter to learn the status, bytes and
// time to first byte; Flush and Unwrap keep streaming working.
type recorder struct {
	http.ResponseWriter
	status    int
	bytes     int64
	firstByte time.Time
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	if rw.firstByte.IsZero() && len(p) > 0 {
		rw.firstByte = time.Now()
	}
	n, err := rw.ResponseWriter.Write(p)
	rw.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client.
func (rw *recorder) Flush() { _ = http.NewResponseController(rw.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics on broken systems)
	return "req_" + hex.EncodeToString(b[:])
}

// serve is the whole chain.
func (g *Guard) serve(w http.ResponseWriter, r *http.Request) {
	x := &exchange{id: newRequestID(), start: time.Now()}
	w.Header().Set("X-Request-Id", x.id)
	rw := &recorder{ResponseWriter: w}
	defer g.finish(rw, r, x)

	if r.URL.Path == "/health" && r.URL.RawQuery == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		x.route = "/health"
		g.health(rw)
		return
	}
	p, ok := cleanPath(r.URL.RawPath, r.URL.Path)
	if !ok {
		g.refuse(rw, x, http.StatusBadRequest, typeInvalidRequest, codeBadPath, "path", "The request path is not valid: dot segments, empty segments and encoded slashes are refused.")
		return
	}
	x.path = p

	// Authenticate.
	secret, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		x.authFailure = authMissing
		g.refuse(rw, x, http.StatusUnauthorized, typeInvalidRequest, codeInvalidKey, "auth",
			"You didn't provide an API key. Send it in the Authorization header: Authorization: Bearer YOUR_KEY.")
		return
	}
	key, err := g.keys.Load().Lookup(secret, time.Now())
	if err != nil {
		msg := fmt.Sprintf("Incorrect API key provided: %s.", keys.Mask(secret))
		x.authFailure = authUnknown
		switch {
		case errors.Is(err, keys.ErrExpired):
			msg = fmt.Sprintf("The API key %s has expired.", keys.Mask(secret))
			x.authFailure = authExpired
		case errors.Is(err, keys.ErrDisabled):
			msg = fmt.Sprintf("The API key %s is disabled.", keys.Mask(secret))
			x.authFailure = authDisabled
		}
		g.refuse(rw, x, http.StatusUnauthorized, typeInvalidRequest, codeInvalidKey, "auth", msg)
		return
	}
	x.key = key

	// Authorize the route.
	rt := classify(p)
	switch {
	case rt.kind == routeUnknown:
		g.refuse(rw, x, http.StatusNotFound, typeInvalidRequest, codeNotFound, "route", "Unknown route "+p+".")
		return
	case rt.kind == routeDenied, rt.kind == routeAdmin && !key.IsAdmin():
		x.authFailure = authForbiddenRoute
		g.refuse(rw, x, http.StatusForbidden, typePermission, codeRouteDenied, "route", "This key may not use "+p+".")
		return
	case r.Method != rt.method:
		rw.Header().Set("Allow", rt.method)
		g.refuse(rw, x, http.StatusMethodNotAllowed, typeInvalidRequest, codeMethod, "method", p+" takes "+rt.method+".")
		return
	}

	// Read and check the body.
	var body []byte
	var reserve int64
	if rt.method == http.MethodPost {
		var status int
		var msg string
		body, status, msg = g.readBody(rw, r)
		if status != 0 {
			code := codeBadJSON
			if status == http.StatusRequestEntityTooLarge {
				code = codeBodyTooLarge
			}
			g.refuse(rw, x, status, typeInvalidRequest, code, "body", msg)
			return
		}
		x.bytesIn = int64(len(body))
		if g.auditLevel == audit.LevelRequest || g.auditLevel == audit.LevelRequestResponse {
			x.reqBody = body // inspect never changes these bytes
		}
		var req inferenceRequest
		if body, req, msg = g.inspect(body, rt); msg != "" {
			g.refuse(rw, x, http.StatusBadRequest, typeInvalidRequest, codeBadJSON, "body", msg)
			return
		}
		x.model, x.stream, x.hideUsage = req.Model, req.Stream, req.hideUsage
		reserve = req.reserve
		if rt.kind == routeInference && !key.AllowsModel(req.Model) {
			x.authFailure = authForbiddenModel
			g.refuse(rw, x, http.StatusForbidden, typePermission, codeModelDenied, "model",
				fmt.Sprintf("This key may not use the model %q.", req.Model))
			return
		}
	}

	// The model must be up.
	if g.ready != nil && !g.ready() {
		rw.Header().Set("Retry-After", "5")
		g.refuse(rw, x, http.StatusServiceUnavailable, typeServer, codeNotReady, "not_ready",
			"The model is loading or restarting; try again shortly.")
		return
	}

	// Admit: every limit that applies, or none.
	d, err := g.store.Admit(r.Context(), Ask{
		Key: key.Name, Limit: g.limits.Load().For(key.Name), Global: g.global, Tokens: reserve,
	})
	if err != nil {
		g.log.Error("limit store failed", "error", err)
		rw.Header().Set("Retry-After", "1")
		g.refuse(rw, x, http.StatusServiceUnavailable, typeServer, codeLimitsDown, "store", "Rate limits cannot be checked right now; try again shortly.")
		return
	}
	setRateHeaders(rw.Header(), d.Status)
	if !d.Allowed {
		g.rejectLimit(rw, x, d, reserve)
		return
	}
	x.admitted, x.ticket = true, d.Ticket

	// Record "received" before forwarding.
	if g.audit != nil {
		if err := g.audit.Write(r.Context(), g.record(r, x, audit.StageReceived, 0)); err != nil {
			_ = g.store.Cancel(context.WithoutCancel(r.Context()), x.ticket)
			x.admitted = false
			if r.Context().Err() != nil {
				// The client went away while its record was queued: nothing
				// is wrong with the audit log, and nobody reads an answer.
				x.errMsg = "client_closed"
				return
			}
			g.log.Error("audit record could not be written; refusing the request", "request_id", x.id, "error", err)
			rw.Header().Set("Retry-After", "1")
			g.refuse(rw, x, http.StatusServiceUnavailable, typeServer, codeAuditDown, "audit", "The request cannot be audited right now; try again shortly.")
			return
		}
	}

	x.body = body
	x.keepResp = g.auditLevel == audit.LevelRequestResponse
	out := r.WithContext(context.WithValue(r.Context(), ctxKey{}, x))
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	g.m.inFlight.Inc()
	defer g.m.inFlight.Dec()
	g.proxy.ServeHTTP(rw, out)
}

// health answers /health without a key and without detail.
func (g *Guard) health(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if g.ready != nil && !g.ready() {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "{\"status\":\"unavailable\"}\n")
		return
	}
	_, _ = io.WriteString(w, "{\"status\":\"ok\"}\n")
}

// bearer extracts the key from an Authorization header.
func bearer(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	k := strings.TrimSpace(h[len(prefix):])
	return k, k != "" && !strings.ContainsAny(k, " \t")
}

func (g *Guard) refuse(w http.ResponseWriter, x *exchange, status int, typ, code, reason, msg string) {
	x.reason, x.errMsg = reason, code
	writeError(w, status, typ, code, msg)
}

func (g *Guard) rejectLimit(w http.ResponseWriter, x *exchange, d Decision, reserve int64) {
	lim := g.limits.Load().For(x.key.Name)
	if d.Reason == ReasonTooLarge {
		g.refuse(w, x, http.StatusRequestEntityTooLarge, typeInvalidRequest, codeTooLarge, d.Reason,
			fmt.Sprintf("Request too large: it reserves %d tokens (prompt estimate + max_tokens) but this key's limit is %d tokens per minute (TPM). Lower max_tokens or shorten the prompt; retrying will not help.", reserve, lim.TPM))
		return
	}
	retry := d.RetryAfter
	w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(max(retry.Seconds(), 1))), 10))
	var msg, typ string
	switch d.Reason {
	case ReasonTPM:
		typ = "tokens"
		msg = fmt.Sprintf("Rate limit reached for key %q on tokens per min (TPM): Limit %d, Requested %d. Please try again in %s.", x.key.Name, lim.TPM, reserve, retry.Round(time.Millisecond))
	case ReasonRPM:
		typ = "requests"
		msg = fmt.Sprintf("Rate limit reached for key %q on requests per min (RPM): Limit %d. Please try again in %s.", x.key.Name, lim.RPM, retry.Round(time.Millisecond))
	case ReasonConcurrency:
		typ = "requests"
		msg = fmt.Sprintf("Too many concurrent requests for key %q: Limit %d. Please try again when one finishes.", x.key.Name, lim.Concurrency)
	case ReasonGlobalRPM:
		typ = "requests"
		msg = fmt.Sprintf("The service is at its overall request limit (%d per min). Please try again in %s.", g.global.RPM, retry.Round(time.Millisecond))
	default:
		typ = "requests"
		msg = fmt.Sprintf("The service is at its overall concurrency limit (%d). Please try again shortly.", g.global.Concurrency)
	}
	g.refuse(w, x, http.StatusTooManyRequests, typ, codeRateLimit, d.Reason, msg)
}

// setRateHeaders writes OpenAI's x-ratelimit-* headers for the limited
// dimensions.
func setRateHeaders(h http.Header, s RateStatus) {
	if s.LimitRequests > 0 {
		h.Set("X-Ratelimit-Limit-Requests", strconv.FormatInt(s.LimitRequests, 10))
		h.Set("X-Ratelimit-Remaining-Requests", strconv.FormatInt(s.RemainingRequests, 10))
		h.Set("X-Ratelimit-Reset-Requests", s.ResetRequests.Round(time.Millisecond).String())
	}
	if s.LimitTokens > 0 {
		h.Set("X-Ratelimit-Limit-Tokens", strconv.FormatInt(s.LimitTokens, 10))
		h.Set("X-Ratelimit-Remaining-Tokens", strconv.FormatInt(s.RemainingTokens, 10))
		h.Set("X-Ratelimit-Reset-Tokens", s.ResetTokens.Round(time.Millisecond).String())
	}
}

// readBody reads at most max_body bytes; status is non-zero on failure.
func (g *Guard) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	limit := g.cfg.MaxBody
	if limit <= 0 {
		limit = 4 << 20
	}
	tooBig := fmt.Sprintf("The request body is larger than the %d bytes allowed.", limit)
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, tooBig
	}
	// Slow bodies get a deadline; headers already have ReadHeaderTimeout.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	rd := http.MaxBytesReader(w, r.Body, limit)
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 {
		body = make([]byte, n) // n <= limit, checked above
		_, err = io.ReadFull(rd, body)
	} else {
		body, err = io.ReadAll(rd)
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, http.StatusRequestEntityTooLarge, tooBig
	case err != nil:
		return nil, http.StatusBadRequest, "The request body could not be read."
	case len(body) == 0:
		return nil, http.StatusBadRequest, "The request body is empty; send a JSON object."
	}
	return body, 0, ""
}

// inferenceRequest is what the guard reads from a request body.
type inferenceRequest struct {
	Model               string          `json:"model"`
	Stream              bool            `json:"stream"`
	StreamOptions       json.RawMessage `json:"stream_options"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	N                   *int64          `json:"n"`
	BestOf              *int64          `json:"best_of"`
	Messages            json.RawMessage `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	Input               json.RawMessage `json:"input"`

	reserve   int64
	hideUsage bool
}

// estimatePrompt estimates the prompt's tokens as the bytes of its JSON
// (messages, prompt or input) divided by 4, rounded up: about right for
// English (4 characters per token) and generous for CJK text (3 bytes per
// character in UTF-8, about 1 token per character), never zero for a
// non-empty prompt.
func estimatePrompt(req *inferenceRequest) int64 {
	n := len(req.Messages) + len(req.Prompt) + len(req.Input)
	return int64((n + 3) / 4)
}

// inspect parses the body, computes the token reservation and, for streams
// whose client did not ask for usage, asks upstream for it. It returns the
// body to forward, or a message for a 400.
func (g *Guard) inspect(body []byte, rt route) ([]byte, inferenceRequest, string) {
	var req inferenceRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, req, "The request body is not a valid JSON object: " + jsonProblem(err)
	}
	if body = bytes.TrimSpace(body); len(body) == 0 || body[0] != '{' {
		return nil, req, "The request body must be a JSON object."
	}
	if msg := ambiguousField(body); msg != "" {
		return nil, req, msg
	}
	if rt.kind != routeInference {
		return body, req, ""
	}
	maxTokens := int64(g.cfg.DefaultMaxTokens)
	if maxTokens <= 0 {
		maxTokens = 1024
	}
	switch {
	case req.MaxCompletionTokens != nil:
		maxTokens = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		maxTokens = *req.MaxTokens
	}
	if maxTokens < 0 {
		return nil, req, "max_tokens must not be negative."
	}
	req.reserve = estimatePrompt(&req)
	if rt.completion {
		// n (and best_of) choices each generate up to max_tokens.
		choices := int64(1)
		for _, c := range []*int64{req.N, req.BestOf} {
			if c != nil && *c > choices {
				choices = *c
			}
		}
		if choices > 1 && maxTokens > math.MaxInt64/choices {
			return nil, req, "n × max_tokens is too large."
		}
		req.reserve += maxTokens * choices
	}
	if !req.Stream || !rt.completion {
		return body, req, ""
	}
	// Streams: make sure upstream sends the usage chunk.
	opts := map[string]json.RawMessage{}
	if len(req.StreamOptions) > 0 && string(req.StreamOptions) != "null" {
		if err := json.Unmarshal(req.StreamOptions, &opts); err != nil {
			return nil, req, "stream_options must be an object."
		}
	}
	var include bool
	if raw, ok := opts["include_usage"]; ok {
		_ = json.Unmarshal(raw, &include)
	}
	if include {
		return body, req, ""
	}
	req.hideUsage = true
	opts["include_usage"] = json.RawMessage("true")
	var all map[string]json.RawMessage
	if err := json.Unmarshal(body, &all); err != nil {
		return nil, req, "The request body is not a valid JSON object: " + jsonProblem(err)
	}
	all["stream_options"], _ = json.Marshal(opts)
	nb, err := json.Marshal(all)
	if err != nil {
		return nil, req, "The request body could not be re-encoded."
	}
	return nb, req, ""
}

// decidedFields are the top-level fields the guard decides on (allowlist,
// reservation, usage). encoding/json matches names case-insensitively and
// keeps the last duplicate; the model server (Python) matches exactly. A body
// holding "model" twice, or "Model" beside "model", could make the guard
// check one value while the server uses another (a model allowlist bypass),
// so such bodies are refused.
var decidedFields = [...]string{"model", "stream", "stream_options", "max_tokens",
	"max_completion_tokens", "messages", "prompt", "input", "n", "best_of"}

// ambiguousField returns a message for a 400 when a top-level name of the
// JSON object body spells one of decidedFields in another case or repeats
// it, else "". body is known to be a valid JSON object. It scans the bytes
// once (no decoding): it runs on every inference request.
func ambiguousField(body []byte) string {
	var seen [len(decidedFields)]bool
	depth, expectKey := 0, false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '"':
			j, escaped := i+1, false
			for ; j < len(body); j++ {
				if escaped {
					escaped = false
				} else if body[j] == '\\' {
					escaped = true
				} else if body[j] == '"' {
					break
				}
			}
			if depth == 1 && expectKey {
				expectKey = false
				name := body[i+1 : min(j, len(body))]
				if bytes.IndexByte(name, '\\') >= 0 && j < len(body) {
					var u string
					if json.Unmarshal(body[i:j+1], &u) == nil {
						name = []byte(u)
					}
				}
				if msg := checkName(name, &seen); msg != "" {
					return msg
				}
			}
			i = j
		case '{', '[':
			depth++
			expectKey = depth == 1 && c == '{'
		case '}', ']':
			depth--
		case ',':
			expectKey = depth == 1
		}
	}
	return ""
}

// checkName checks one top-level name against decidedFields.
func checkName(name []byte, seen *[len(decidedFields)]bool) string {
	if len(name) > len("max_completion_tokens") {
		return ""
	}
	for i, f := range decidedFields {
		if !strings.EqualFold(string(name), f) {
			continue
		}
		if string(name) != f {
			return fmt.Sprintf("The request body names %q: write it %q (field names are case-sensitive).", name, f)
		}
		if seen[i] {
			return fmt.Sprintf("The request body gives %q more than once.", f)
		}
		seen[i] = true
	}
	return ""
}

// jsonProblem describes a JSON error without quoting the body.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d.", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be a %s, not a JSON %s.", te.Field, te.Type, te.Value)
	}
	return "it could not be decoded."
}

// clientAddr is the client's address: the peer, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For entry that is not one.
func (g *Guard) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(g.trusted) == 0 {
		return host
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !g.isTrusted(addr) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !g.isTrusted(a) {
			return a.String()
		}
		host = a.String()
	}
	return host
}

func (g *Guard) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (g *Guard) record(r *http.Request, x *exchange, stage string, status int) *audit.Record {
	rec := &audit.Record{
		Time:      time.Now().UTC(),
		Stage:     stage,
		RequestID: x.id,
		Client:    g.clientAddr(r),
		Method:    r.Method,
		Path:      x.path,
		Model:     x.model,
		Stream:    x.stream,
		Status:    status,
		BytesIn:   x.bytesIn,
		UserAgent: r.UserAgent(),
	}
	if rec.Path == "" {
		rec.Path = r.URL.EscapedPath() // refused before it was checked
	}
	switch {
	case stage == audit.StageReceived && x.reqBody != nil:
		rec.RequestBody = auditBody(x.reqBody)
	case stage == audit.StageCompleted && x.keepResp:
		rec.ResponseBody = auditBody(x.respBody)
	}
	if x.key != nil {
		rec.Key, rec.Role = x.key.Name, x.key.Role
	}
	return rec
}

// finish settles the reservation, releases concurrency and writes the
// "completed" record, however the response ended (a panic from the proxy
// aborting a broken stream included).
func (g *Guard) finish(rw *recorder, r *http.Request, x *exchange) {
	status := rw.status
	if status == 0 {
		status = 499 // client went away before any answer
		if x.errMsg == "" {
			x.errMsg = "client_closed"
		}
	}
	ctx := context.WithoutCancel(r.Context())
	if x.admitted {
		used := int64(-1) // unknown: charge the reservation
		switch {
		case x.usageSeen:
			used = x.promptTokens + x.completionTokens
		case x.upstreamDone && x.upstreamStatus >= 400:
			used = 0 // upstream refused it: nothing generated
		}
		if err := g.store.Finish(ctx, x.ticket, used); err != nil {
			g.log.Error("limit store failed to settle", "request_id", x.id, "error", err)
		}
		if x.errMsg == "" && !x.upstreamDone && !x.usageSeen {
			x.errMsg = "incomplete"
		}
	}
	latency := time.Since(x.start)
	g.m.observe(x, status, latency, rw.firstByte)
	if g.audit == nil {
		return
	}
	rec := g.record(r, x, audit.StageCompleted, status)
	rec.Error = x.errMsg
	rec.Limit = limitName(x.reason)
	rec.PromptTokens, rec.CompletionTokens = int(x.promptTokens), int(x.completionTokens)
	rec.LatencyMS = float64(latency.Microseconds()) / 1000
	if !rw.firstByte.IsZero() {
		rec.TTFTMS = float64(rw.firstByte.Sub(x.start).Microseconds()) / 1000
	}
	rec.BytesOut = rw.bytes
	if err := g.audit.Write(ctx, rec); err != nil {
		g.log.Error("audit completed record could not be written", "request_id", x.id, "error", err)
	}
}

// maxAuditBody bounds the bytes of a body an audit record keeps (audit
// levels request and request_response); longer bodies are cut and marked.
const maxAuditBody = 64 << 10

// truncatedMark ends a body cut at maxAuditBody.
const truncatedMark = "…[truncated]"

// auditBody renders a body for an audit record, cut at maxAuditBody.
func auditBody(b []byte) string {
	if len(b) > maxAuditBody {
		return string(b[:maxAuditBody]) + truncatedMark
	}
	return string(b)
}

// keepBody appends p to the response body kept for the audit record, up to
// one byte past maxAuditBody (so auditBody knows it was cut).
func (x *exchange) keepBody(p []byte) {
	if !x.keepResp || len(x.respBody) > maxAuditBody {
		return
	}
	x.respBody = append(x.respBody, p[:min(len(p), maxAuditBody+1-len(x.respBody))]...)
}

// limitName keeps only limiter reasons for the audit record's limit field.
func limitName(reason string) string {
	switch reason {
	case ReasonGlobalRPM, ReasonGlobalConcurrency, ReasonRPM, ReasonTPM, ReasonConcurrency, ReasonTooLarge:
		return reason
	}
	return ""
}
