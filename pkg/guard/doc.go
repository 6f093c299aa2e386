// Package guard is the HTTP front door of the model (DESIGN.md "Wire
// behaviour of the guard"): every request is given an id, authenticated by
// its Bearer key, authorized (route allowlist, role, model), admitted by the
// rate limiter (global and per-key rpm, tpm and concurrency, all or nothing),
// audited, and only then piped to the upstream (vLLM on a unix socket or a
// loopback port), streams flushed chunk by chunk. Token reservations are
// settled to the real usage the upstream reports. The keys, limits and TLS
// files are watched and swapped atomically when they change.
//
// # Chain
//
//	x-request-id → /health (no key) → path check → authenticate → route and
//	method → body (max_body) and model → ready? → admit → audit "received"
//	→ proxy → usage → settle → audit "completed" → metrics
//
// Paths are decided on the decoded request path exactly as the upstream will
// get it; a path with dot segments, empty segments, backslashes or encoded
// slashes or dots is refused (400), never normalised into another route. The
// Host header plays no part. Routes: POST /v1/chat/completions,
// /v1/completions, /v1/embeddings and GET /v1/models for every key;
// /tokenize, /detokenize, /version and /is_sleeping for admin keys only;
// vLLM's control routes (/pause, /sleep, /collective_rpc, /update_weights,
// /load, /invocations, /metrics, …) refused for everyone (403); anything else
// is 404. Authentication comes first, so without a key every path is 401.
//
// # Audit
//
// An admitted request gets a "received" record, written (Auditor.Write
// returned) before the request is forwarded, and a "completed" record at the
// end with status, error, tokens, latency_ms, ttft_ms and bytes. A request
// the guard refuses (400, 401, 403, 404, 405, 413, 429, 503) gets a single
// "completed" record with the status, the error code and, for limits, the
// limit that refused it. If the "received" record cannot be written the
// request is refused with 503 and its admission is undone (it costs nothing).
//
// # Tokens
//
// The reservation is the prompt estimate plus max_completion_tokens, else
// max_tokens, else guard.default_max_tokens (completions only; embeddings
// reserve the estimate alone). The estimate is the byte length of the
// request's messages, prompt or input JSON divided by 4, rounded up: about
// 4 characters per token for English, and on the generous side for CJK text
// (3 UTF-8 bytes per character, about one token each). After the response
// the reservation is settled to the usage the upstream reports (the JSON
// usage object, or the stream's usage chunk: streams are asked for
// stream_options.include_usage and the usage-only chunk is removed for
// clients that did not ask for it). A response that ends without usage is
// charged its whole reservation (an abandoned stream), except a complete
// upstream error response (status ≥ 400), which is charged no tokens. Every
// admitted request costs one request whatever its outcome; a request whose
// reservation exceeds the key's tpm gets 413 request_too_large.
//
// # Limits
//
// Requests per minute use GCRA (a key idle for a minute may spend its whole
// rpm at once, then one request every minute/rpm: no window edges); tokens
// per minute a token bucket of capacity tpm refilled at tpm per minute, in
// which reservations are debited and settlement credits the unused part (or
// debits an overrun). MemoryStore takes every limit under one mutex; a shared
// Store (Redis) implements the same interface with one script per call.
// Limit state is kept per key name and survives reloads for keys that still
// exist.
//
// # Metrics
//
// On Deps.Registerer: glmctl_guard_requests_total{key,model,route,code},
// glmctl_guard_request_duration_seconds{route} and
// glmctl_guard_time_to_first_token_seconds{route} (successful streams only),
// glmctl_guard_tokens_total{key,kind}, glmctl_guard_rate_limit_rejections_total
// {key,limit} (a 413 request_too_large counts as tpm),
// glmctl_guard_auth_failures_total{reason}, glmctl_guard_in_flight_requests,
// glmctl_guard_upstream_errors_total (unreachable upstream or a 5xx answer),
// glmctl_guard_rate_limit_remaining_requests{key} and _tokens{key} (read from
// the Store at scrape time when it implements Peeker; absent for an unlimited
// dimension), glmctl_guard_rate_limit_concurrency_in_use{key} (when the Store
// implements SlotCounter), glmctl_guard_model_ready{program} (1 while
// inference requests are forwarded; the label is guard.program in force), the
// connection, policy and limits-store families listed in the README, and the
// glmctl_config_last_reload_* gauges of its files. Per-key
// series exist from the load of the keys file and follow its reloads; labels
// are bounded as described at labelUnknownKey in metrics.go.
package guard
