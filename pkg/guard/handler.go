package guard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// exchange is the per-request state that every stage of the request path
// reads and writes, and that the proxy hooks and the response recorder
// share. All of it is touched from the request's goroutine, but cut and up,
// which answerSet.cut also reaches (an atomic, a mutex).
type exchange struct {
	cut atomic.Bool // the shutdown ended its answer (answerSet.cut)
	up  upHandle    // aborts its upstream I/O (answerSet.cut)
	// forwarding: sent upstream, in answerSet until finish.
	forwarding bool
	rec        audit.Record // the audit record being written (record)
	id         string
	start      time.Time
	// s is the settings in force when the request arrived: one view for
	// the whole request, whatever reloads happen meanwhile.
	s    *settings
	path string
	rt   *route
	key  *keys.Key
	// deniedKey names the key of a request refused for a revoked,
	// disabled or expired key (key is nil then), for the audit trail.
	deniedKey string
	model     string
	stream    bool
	// hideUsage: the client did not ask for the stream's usage chunk; the
	// guard asked upstream for it and removes it on the way back.
	hideUsage bool
	reserve   int64
	bytesIn   int64
	body      []byte // the request body to forward (nil: none)
	bodyDone  bool   // the client's body has been read to its end
	// clientBody is the body as the client sent it; promptTokens,
	// maxTokens and choices what inspection read from it (the policy's
	// inputs); policy the policy's decisions on it.
	clientBody                    []byte
	promptEst, maxTokens, choices int64
	policy                        []audit.PolicyHit

	admitted bool
	ticket   Ticket
	store    Store  // the store that admitted it (the shared one, or the fallback)
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
	aborted          bool // the answer is being cut (panic(http.ErrAbortHandler))
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

// A stage is one step of the request path. It returns true to go on, or
// false once it has answered the request (refused it).
type stage func(g *Guard, x *exchange, w *recorder, r *http.Request) bool

// stages is the request path, in order: path → auth → route → body → model
// → readiness → admit → audit. An admitted, audited request is then
// forwarded (proxy.go), and finish settles and records it however it ends.
var stages = [...]stage{
	(*Guard).checkPath,
	(*Guard).authenticate,
	(*Guard).authorizeRoute,
	(*Guard).readBody,
	(*Guard).authorizeModel,
	(*Guard).checkPolicy,
	(*Guard).checkReady,
	(*Guard).admit,
	(*Guard).recordReceived,
}

// serve runs one request through the stages, then forwards it.
func (g *Guard) serve(w http.ResponseWriter, r *http.Request) {
	x := &exchange{id: newRequestID(), start: time.Now(), s: g.snap.Load()}
	w.Header().Set("X-Request-Id", x.id)
	rw := &recorder{ResponseWriter: w}
	defer g.finish(rw, r, x)

	if r.URL.Path == "/health" && r.URL.RawQuery == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && !hasBody(r) {
		x.route = "/health"
		g.health(rw, x)
		return
	}
	for _, st := range stages {
		if !st(g, x, rw, r) {
			return
		}
	}
	g.forward(rw, r, x)
}

// checkPath decides the path the guard routes on and forwards.
func (g *Guard) checkPath(x *exchange, w *recorder, r *http.Request) bool {
	p, ok := cleanPath(r.URL.RawPath, r.URL.Path)
	if !ok {
		g.refuse(w, r, x, http.StatusBadRequest, typeInvalidRequest, codeBadPath, "path", "The request path is not valid: dot segments, empty segments and encoded slashes are refused.")
		return false
	}
	x.path, x.rt = p, lookupRoute(p)
	return true
}

// authenticate finds the key of the request. It comes before anything else
// is looked at, so without a valid key every path is 401.
func (g *Guard) authenticate(x *exchange, w *recorder, r *http.Request) bool {
	secret, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		x.authFailure = authMissing
		g.refuse(w, r, x, http.StatusUnauthorized, typeInvalidRequest, codeInvalidKey, "auth",
			"You didn't provide an API key. Send it in the Authorization header: Authorization: Bearer YOUR_KEY.")
		return false
	}
	key, err := x.s.keys.Lookup(secret, time.Now())
	if err != nil {
		if key != nil {
			x.deniedKey = key.Name
		}
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
		g.refuse(w, r, x, http.StatusUnauthorized, typeInvalidRequest, codeInvalidKey, "auth", msg)
		return false
	}
	x.key = key
	markAuthenticated(r.Context())
	return true
}

// authorizeRoute applies the route table: who may call the path, with
// which method, and whether it takes a body.
func (g *Guard) authorizeRoute(x *exchange, w *recorder, r *http.Request) bool {
	rt := x.rt
	switch {
	case rt.access == accessNone:
		g.refuse(w, r, x, http.StatusNotFound, typeInvalidRequest, codeNotFound, "route", "Unknown route "+x.path+".")
		return false
	case rt.access == accessDenied, rt.access == accessAdmin && !x.key.IsAdmin():
		x.authFailure = authForbiddenRoute
		g.refuse(w, r, x, http.StatusForbidden, typePermission, codeRouteDenied, "route", "This key may not use "+x.path+".")
		return false
	case r.Method != rt.method:
		w.Header().Set("Allow", rt.method)
		g.refuse(w, r, x, http.StatusMethodNotAllowed, typeInvalidRequest, codeMethod, "method", x.path+" takes "+rt.method+".")
		return false
	case rt.body == bodyNone && hasBody(r):
		g.refuse(w, r, x, http.StatusBadRequest, typeInvalidRequest, codeBodyNotAllowed, "body", x.path+" takes no request body.")
		return false
	}
	return true
}

// readBody reads and inspects a JSON body (routes that take one): at most
// max_body bytes within body_timeout, then the decided fields with the
// model server's semantics (inspect.go).
func (g *Guard) readBody(x *exchange, w *recorder, r *http.Request) bool {
	if x.rt.body == bodyNone {
		return true
	}
	if len(r.TransferEncoding) > 0 {
		// A chunked body may have come with a Content-Length that Go's
		// parser dropped (RFC 9112 §6.3: a message with both may be a
		// smuggling attempt): answer it, then close the connection.
		w.Header().Set("Connection", "close")
	}
	body, status, msg := x.s.read(w, r)
	if status != 0 {
		code := codeBadJSON
		switch status {
		case http.StatusRequestEntityTooLarge:
			code = codeBodyTooLarge
		case http.StatusRequestTimeout:
			code = codeBodyTimeout
		}
		g.refuse(w, r, x, status, typeInvalidRequest, code, "body", msg)
		return false
	}
	x.bodyDone = true
	x.bytesIn = int64(len(body))
	if g.auditLevel == audit.LevelRequest || g.auditLevel == audit.LevelRequestResponse {
		x.reqBody = body // inspect never changes these bytes
	}
	req, err := inspect(body, x.rt, x.s.inspect)
	if err != nil {
		g.refuse(w, r, x, http.StatusBadRequest, typeInvalidRequest, codeBadJSON, "body", err.Error())
		return false
	}
	x.model, x.stream, x.hideUsage, x.reserve, x.body = req.model, req.stream, req.hideUsage, req.reserve, req.body
	x.clientBody, x.promptEst, x.maxTokens, x.choices = body, req.promptTokens, req.maxTokens, req.choices
	return true
}

// checkPolicy applies the request policy (policy.go): the config's, narrowed
// by the key's own. A rejection is a 400 naming the rule (never the matched
// text); flags are recorded and counted; a request that names no completion
// bound under a max_tokens cap is sent with max_tokens set to the cap.
func (g *Guard) checkPolicy(x *exchange, w *recorder, r *http.Request) bool {
	p := x.s.policy.WithOverride(x.key.Policy)
	if p == nil || x.rt.reserve == reserveNothing {
		return true
	}
	v := p.Check(x.clientBody, x.path, x.promptEst, x.maxTokens)
	x.policy = v.Hits
	if v.Rejected {
		g.refuse(w, r, x, http.StatusBadRequest, typeInvalidRequest, codePolicy, "policy", v.Message)
		return false
	}
	if v.MaxTokens > 0 {
		x.body = withMaxTokens(x.body, v.MaxTokens)
		x.reserve = satAdd(x.promptEst, satMul(v.MaxTokens, max(x.choices, 1)))
	}
	return true
}

// authorizeModel applies the key's model allowlist on user routes.
func (g *Guard) authorizeModel(x *exchange, w *recorder, r *http.Request) bool {
	if x.rt.access != accessUser || x.rt.body == bodyNone || x.key.AllowsModel(x.model) {
		return true
	}
	x.authFailure = authForbiddenModel
	g.refuse(w, r, x, http.StatusForbidden, typePermission, codeModelDenied, "model",
		fmt.Sprintf("This key may not use the model %q.", x.model))
	return false
}

// modelReady tells whether inference requests are forwarded now: the
// program the guard gates on is ready and the model server has not just
// stopped answering.
func (g *Guard) modelReady(program string) bool {
	return !g.hung.isHung() && (g.ready == nil || g.ready(program))
}

// checkReady refuses requests while the model is loading or restarting.
func (g *Guard) checkReady(x *exchange, w *recorder, r *http.Request) bool {
	if g.hung.isHung() {
		w.Header().Set("Retry-After", strconv.Itoa(int(hungFor.Seconds())))
		g.refuse(w, r, x, http.StatusServiceUnavailable, typeServer, codeNotReady, "not_ready",
			"The model server is not answering; try again shortly.")
		return false
	}
	if g.ready == nil || g.ready(x.s.program) {
		return true
	}
	w.Header().Set("Retry-After", "5")
	g.refuse(w, r, x, http.StatusServiceUnavailable, typeServer, codeNotReady, "not_ready",
		"The model is loading or restarting; try again shortly.")
	return false
}

// admit takes every limit that applies, or none.
func (g *Guard) admit(x *exchange, w *recorder, r *http.Request) bool {
	ask := Ask{Key: x.key.Name, Limit: x.s.limits.For(x.key.Name), Global: x.s.global, Tokens: x.reserve}
	x.store = g.store
	d, err := g.store.Admit(r.Context(), ask)
	if err != nil && g.fallback != nil && errors.Is(err, ErrStoreUnavailable) {
		// limits_store_failure = "open": this box's own limits decide
		// while the shared store cannot be reached (the store logs the
		// outage once; the metric counts these).
		g.m.storeFallback.Inc()
		x.store = g.fallback
		d, err = g.fallback.Admit(r.Context(), ask)
	}
	if err != nil {
		if !errors.Is(err, ErrStoreUnavailable) { // an outage is logged by the store, once
			g.log.Error("limit store failed", "error", err)
		}
		w.Header().Set("Retry-After", "1")
		g.refuse(w, r, x, http.StatusServiceUnavailable, typeServer, codeLimitsDown, "store", "Rate limits cannot be checked right now; try again shortly.")
		return false
	}
	setRateHeaders(w.Header(), d.Status)
	if !d.Allowed {
		g.rejectLimit(w, r, x, d)
		return false
	}
	x.admitted, x.ticket = true, d.Ticket
	return true
}

// recordReceived writes the "received" record before anything is
// forwarded; a request that cannot be audited is not served.
func (g *Guard) recordReceived(x *exchange, w *recorder, r *http.Request) bool {
	if g.audit == nil {
		return true
	}
	err := g.audit.Write(r.Context(), g.record(r, x, audit.StageReceived, 0))
	if err == nil {
		g.auditState.ok(g.log)
		return true
	}
	_ = x.store.Cancel(context.WithoutCancel(r.Context()), x.ticket)
	x.admitted = false
	if r.Context().Err() != nil {
		// The client went away while its record was queued: nothing is
		// wrong with the audit log, and nobody reads an answer.
		x.errMsg = "client_closed"
		return false
	}
	g.auditState.failed(g.log, err, true)
	w.Header().Set("Retry-After", "1")
	g.refuse(w, r, x, http.StatusServiceUnavailable, typeServer, codeAuditDown, "audit", "The request cannot be audited right now; try again shortly.")
	return false
}

// forward hands an admitted, audited request to the proxy.
func (g *Guard) forward(w *recorder, r *http.Request, x *exchange) {
	x.keepResp = g.auditLevel == audit.LevelRequestResponse
	g.m.inFlight.Inc()
	defer g.m.inFlight.Dec()
	g.proxy(w, r, x)
}

// hasBody reports whether the client announced a request body.
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 || len(r.TransferEncoding) > 0
}

// health answers /health without a key and without detail.
func (g *Guard) health(w http.ResponseWriter, x *exchange) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if g.ready != nil && !g.ready(x.s.program) {
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

// refuse answers a request the guard will not serve. The connection is
// closed after the answer unless the request's body (if any) has been read
// and the refusal is one a client may retry on the same connection (429,
// 503): the guard never waits for, nor forwards, a body it has refused.
func (g *Guard) refuse(w *recorder, r *http.Request, x *exchange, status int, typ, code, reason, msg string) {
	x.reason, x.errMsg = reason, code
	rc := http.NewResponseController(w.ResponseWriter)
	unread := hasBody(r) && !x.bodyDone
	if unread || (status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable) {
		w.Header().Set("Connection", "close")
	}
	if unread {
		// net/http would read up to 256 KiB of the unread body after the
		// answer, waiting as long as the client likes: end reading now,
		// and close with a bounded linger so the answer is not reset away.
		_ = rc.SetReadDeadline(time.Unix(1, 0))
		lingerOnClose(r.Context())
	}
	// A client that does not read its answer cannot hold the handler.
	_ = rc.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
	writeError(w, status, typ, code, msg)
}

// refusalWriteTimeout bounds the writing of a refusal.
const refusalWriteTimeout = 10 * time.Second

func (g *Guard) rejectLimit(w *recorder, r *http.Request, x *exchange, d Decision) {
	lim := x.s.limits.For(x.key.Name)
	reserve := x.reserve
	if d.Reason == ReasonTooLarge {
		g.refuse(w, r, x, http.StatusRequestEntityTooLarge, typeInvalidRequest, codeTooLarge, d.Reason,
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
		msg = fmt.Sprintf("The service is at its overall request limit (%d per min). Please try again in %s.", x.s.global.RPM, retry.Round(time.Millisecond))
	default:
		typ = "requests"
		msg = fmt.Sprintf("The service is at its overall concurrency limit (%d). Please try again shortly.", x.s.global.Concurrency)
	}
	g.refuse(w, r, x, http.StatusTooManyRequests, typ, codeRateLimit, d.Reason, msg)
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

// read reads the request body: at most maxBody bytes, all of it within
// bodyTimeout. status is non-zero on failure (413, 408 or 400); the read
// deadline then stays, so nothing more is read from that connection.
func (s *settings) read(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	tooBig := func() string { return fmt.Sprintf("The request body is larger than the %d bytes allowed.", s.maxBody) }
	if r.ContentLength > s.maxBody {
		return nil, http.StatusRequestEntityTooLarge, tooBig()
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.bodyTimeout))
	rd := http.MaxBytesReader(w, r.Body, s.maxBody)
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 {
		body = make([]byte, n) // n <= maxBody, checked above
		_, err = io.ReadFull(rd, body)
	} else {
		body, err = io.ReadAll(rd)
	}
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return nil, http.StatusRequestEntityTooLarge, tooBig()
	case errors.As(err, &ne) && ne.Timeout():
		return nil, http.StatusRequestTimeout, fmt.Sprintf("The request body did not arrive within %s.", s.bodyTimeout)
	case err != nil:
		return nil, http.StatusBadRequest, "The request body could not be read."
	case len(body) == 0:
		return nil, http.StatusBadRequest, "The request body is empty; send a JSON object."
	}
	_ = rc.SetReadDeadline(time.Time{})
	return body, 0, ""
}

// clientAddr is the client's address: the peer, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For entry that is not one.
func (s *settings) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.trusted) == 0 {
		return host
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !s.isTrusted(addr) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !s.isTrusted(a) {
			return a.String()
		}
		host = a.String()
	}
	return host
}

func (s *settings) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (g *Guard) record(r *http.Request, x *exchange, stage string, status int) *audit.Record {
	// One record per exchange, filled again for each stage: the auditor
	// keeps none after its call (Auditor), so none is allocated per record.
	rec := &x.rec
	*rec = audit.Record{
		Time:      time.Now().UTC(),
		Stage:     stage,
		RequestID: x.id,
		Client:    x.s.clientAddr(r),
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
	rec.Policy = x.policy
	switch {
	case x.key != nil:
		rec.Key, rec.Role = x.key.Name, x.key.Role
	case x.deniedKey != "":
		rec.Key = x.deniedKey
	}
	return rec
}

// finish settles the reservation, releases concurrency and writes the
// "completed" record, however the response ended (a panic from the proxy
// aborting a broken stream included).
func (g *Guard) finish(rw *recorder, r *http.Request, x *exchange) {
	if x.forwarding {
		// Last: a shutdown's cut waits for the answer flushed and recorded.
		defer g.answering.remove(x)
	}
	status := rw.status
	if status != 0 && !x.aborted {
		// The answer leaves now: settling the limits and recording the
		// request must not delay it (net/http sends what is buffered only
		// once the handler returns).
		_ = http.NewResponseController(rw.ResponseWriter).Flush()
	}
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
		if err := x.store.Finish(ctx, x.ticket, used); err != nil {
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
	if s, ok := g.audit.(Submitter); ok {
		// Logged and counted by the writer when it cannot be written.
		_ = s.Submit(rec)
		return
	}
	if err := g.audit.Write(ctx, rec); err != nil {
		g.auditState.failed(g.log, err, false)
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
