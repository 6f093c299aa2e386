package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// Label values of the guard's metrics. Every label is bounded:
//
//   - key: a key name from the keys file, or "unknown" for a request that
//     presented no key, an unknown, expired or disabled key, or a key removed
//     by a reload while the request was in flight.
//   - model: the requested model when it is known, "none" when the request
//     names no model (GET routes, requests refused before their body was
//     read), else "other". Known models are those listed in any key's models
//     allowlist and those the upstream reported in a /v1/models answer that
//     went through the guard (at most maxLearnedModels of them).
//   - route: the routed path for the routes the guard knows (inference, read,
//     admin and control routes), "/health", or "other" (unknown or invalid
//     paths).
//   - code: the HTTP status sent to the client (499: the client went away
//     before any answer).
const (
	labelUnknownKey = "unknown"
	labelNoModel    = "none"
	labelOther      = "other"

	// maxLearnedModels bounds the models learnt from upstream answers.
	maxLearnedModels = 32
)

// Reasons counted by glmctl_guard_auth_failures_total.
const (
	authMissing        = "missing"
	authUnknown        = "unknown"
	authExpired        = "expired"
	authDisabled       = "disabled"
	authForbiddenModel = "forbidden_model"
	authForbiddenRoute = "forbidden_route"
)

// authReasons are the values of glmctl_guard_auth_failures_total's reason.
func authReasons() []string {
	return []string{authMissing, authUnknown, authExpired, authDisabled, authForbiddenModel, authForbiddenRoute}
}

// limitLabels are the values of the limit label of
// glmctl_guard_rate_limit_rejections_total; a request whose reservation
// exceeds the key's tpm (413) counts as "tpm".
func limitLabels() []string {
	return []string{ReasonRPM, ReasonTPM, ReasonConcurrency, ReasonGlobalRPM, ReasonGlobalConcurrency}
}

// tokenKinds are the values of glmctl_guard_tokens_total's kind.
func tokenKinds() []string { return []string{"prompt", "completion"} }

// ReloadMetrics are glmctl_config_last_reload_successful and
// glmctl_config_last_reload_success_timestamp_seconds, by file. The guard
// records its keys and limits files (and TLS certificate) in them; the daemon
// records its HCL config, so all reloads share one family.
type ReloadMetrics struct {
	ok   *prometheus.GaugeVec
	time *prometheus.GaugeVec
}

// NewReloadMetrics creates the reload gauges and registers them on reg (nil:
// not exposed).
func NewReloadMetrics(reg prometheus.Registerer) (*ReloadMetrics, error) {
	r := &ReloadMetrics{
		ok: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "glmctl_config_last_reload_successful",
			Help: "Whether the last load of the file succeeded (1) or kept the previous state (0).",
		}, []string{"file"}),
		time: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "glmctl_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful load of the file (0: none yet).",
		}, []string{"file"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.ok, r.time} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register reload metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Record notes a load of file: ok sets the success flag and time, a failure
// only clears the flag.
func (r *ReloadMetrics) Record(file string, ok bool) {
	if ok {
		r.ok.WithLabelValues(file).Set(1)
		r.time.WithLabelValues(file).Set(float64(time.Now().UnixNano()) / 1e9)
		return
	}
	r.ok.WithLabelValues(file).Set(0)
	r.time.WithLabelValues(file).Add(0) // exists, at 0, until a success
}

// OK returns the success gauge of file (for tests and status).
func (r *ReloadMetrics) OK(file string) prometheus.Gauge { return r.ok.WithLabelValues(file) }

// metrics are the guard's Prometheus collectors.
type metrics struct {
	requests       *prometheus.CounterVec   // key, model, route, code
	duration       *prometheus.HistogramVec // route
	firstToken     *prometheus.HistogramVec // route
	tokens         *prometheus.CounterVec   // key, kind
	rejections     *prometheus.CounterVec   // key, limit
	authFailures   *prometheus.CounterVec   // reason
	inFlight       prometheus.Gauge
	upstreamErrors prometheus.Counter
	connsOpen      prometheus.Gauge
	connsUnauth    prometheus.Gauge
	connsRefused   *prometheus.CounterVec // reason
	storeFallback  prometheus.Counter
	policy         *prometheus.CounterVec // rule, action
	reloads        *ReloadMetrics
	remaining      *remainingCollector
	modelReady     *readyCollector

	mu      sync.RWMutex
	keys    map[string]bool // key names that have series
	models  map[string]bool // from the keys' allowlists
	learned map[string]bool // from upstream /v1/models answers
}

// newMetrics creates the guard's metrics and registers them on reg (nil: kept
// but not exposed). reloads nil: the guard creates and registers its own.
func newMetrics(reg prometheus.Registerer, g *Guard, reloads *ReloadMetrics) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_requests_total",
			Help: "Requests answered by the guard, by key, model, route and HTTP status code.",
		}, []string{"key", "model", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glmctl_guard_request_duration_seconds",
			Help:    "Time from request to the end of the response, streams included, by route.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"route"}),
		firstToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glmctl_guard_time_to_first_token_seconds",
			Help:    "Time from request to the first byte of a successful streamed answer, by route.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_tokens_total",
			Help: "Tokens reported by the upstream, by key and kind (prompt, completion).",
		}, []string{"key", "kind"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_rate_limit_rejections_total",
			Help: "Requests refused by a rate limit, by key and limit (rpm, tpm, concurrency, global_rpm, global_concurrency).",
		}, []string{"key", "limit"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_auth_failures_total",
			Help: "Requests refused for their key, by reason (missing, unknown, expired, disabled, forbidden_model, forbidden_route).",
		}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glmctl_guard_in_flight_requests",
			Help: "Requests being proxied to the upstream now.",
		}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glmctl_guard_upstream_errors_total",
			Help: "Requests the upstream failed: it could not be reached, or it answered with a 5xx status.",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glmctl_guard_connections_open",
			Help: "Open client connections of the guard (capped by guard.max_connections).",
		}),
		connsUnauth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glmctl_guard_connections_unauthenticated",
			Help: "Open client connections on which no request has authenticated yet.",
		}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_connections_refused_total",
			Help: "Client connections refused at accept, by reason (max_connections: 503; per_client: 429, too many unauthenticated connections from one address).",
		}, []string{"reason"}),
		storeFallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glmctl_guard_limits_store_fallback_total",
			Help: "Requests decided by this box's in-process limits because the shared (Redis) store could not be reached (limits_store_failure = \"open\").",
		}),
		policy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_policy_decisions_total",
			Help: "Request policy decisions, by rule (or built-in check: max_prompt_tokens, max_tokens, deny_params, unreadable) and action (reject, flag).",
		}, []string{"rule", "action"}),
		reloads:   reloads,
		remaining: newRemainingCollector(g),
		modelReady: &readyCollector{g: g, desc: prometheus.NewDesc("glmctl_guard_model_ready",
			"1 while the guard forwards inference requests, 0 while it answers them 503 because the program it gates on (guard.program, the label; \"\" when none) is not ready or the model server stopped answering.",
			[]string{"program"}, nil)},
		keys:    map[string]bool{},
		models:  map[string]bool{},
		learned: map[string]bool{},
	}
	for _, r := range authReasons() {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{connMaxConnections, connPerClient} {
		m.connsRefused.WithLabelValues(r)
	}
	// The inference and models routes have their histograms from start-up.
	for _, r := range inferenceLabels() {
		m.duration.WithLabelValues(r)
		if lookupRoute(r).streams {
			m.firstToken.WithLabelValues(r)
		}
	}
	if m.reloads == nil {
		r, err := NewReloadMetrics(reg)
		if err != nil {
			return nil, err
		}
		m.reloads = r
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.firstToken, m.tokens, m.rejections,
		m.authFailures, m.inFlight, m.upstreamErrors, m.remaining, m.connsOpen, m.connsUnauth, m.connsRefused, m.storeFallback, m.policy, m.modelReady} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register guard metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) reloaded(file string, ok bool) { m.reloads.Record(file, ok) }

// setKeys makes the per-key series match the keys file: new keys get their
// series at 0, removed keys lose theirs. It also takes the models listed in
// the keys' allowlists as known model label values.
func (m *metrics) setKeys(f *keys.File) {
	names := map[string]bool{}
	models := map[string]bool{}
	for _, e := range f.Entries {
		names[e.Name] = true
		for _, mod := range e.Models {
			models[mod] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.keys {
		if !names[k] {
			l := prometheus.Labels{"key": k}
			m.requests.DeletePartialMatch(l)
			m.tokens.DeletePartialMatch(l)
			m.rejections.DeletePartialMatch(l)
		}
	}
	for k := range names {
		if m.keys[k] {
			continue
		}
		for _, kind := range tokenKinds() {
			m.tokens.WithLabelValues(k, kind)
		}
		for _, lim := range limitLabels() {
			m.rejections.WithLabelValues(k, lim)
		}
	}
	m.keys, m.models = names, models
}

// keyNames returns the current key names, sorted.
func (m *metrics) keyNames() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.keys))
	for k := range m.keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// keyLabel is the key label of a request.
func (m *metrics) keyLabel(k *keys.Key) string {
	if k == nil {
		return labelUnknownKey
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.keys[k.Name] {
		return labelUnknownKey
	}
	return k.Name
}

// modelLabel is the model label of a request.
func (m *metrics) modelLabel(model string) string {
	if model == "" {
		return labelNoModel
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.models[model] || m.learned[model] {
		return model
	}
	return labelOther
}

// learnModels takes the model ids of an upstream /v1/models answer as known
// model label values (at most maxLearnedModels in all).
func (m *metrics) learnModels(body []byte) {
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &list) != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range list.Data {
		if d.ID == "" || m.learned[d.ID] || len(m.learned) >= maxLearnedModels {
			continue
		}
		m.learned[d.ID] = true
	}
}

// observe counts one finished request.
func (m *metrics) observe(x *exchange, status int, latency time.Duration, firstByte time.Time) {
	key := m.keyLabel(x.key)
	route := x.route
	switch {
	case route != "":
	case x.rt != nil:
		route = x.rt.label
	default:
		route = labelOther // refused before the path was checked
	}
	m.requests.WithLabelValues(key, m.modelLabel(x.model), route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(latency.Seconds())
	if x.admitted && x.stream && status == 200 && !firstByte.IsZero() {
		m.firstToken.WithLabelValues(route).Observe(firstByte.Sub(x.start).Seconds())
	}
	if x.authFailure != "" {
		m.authFailures.WithLabelValues(x.authFailure).Inc()
	}
	switch x.reason {
	case ReasonRPM, ReasonTPM, ReasonConcurrency, ReasonGlobalRPM, ReasonGlobalConcurrency:
		m.rejections.WithLabelValues(key, x.reason).Inc()
	case ReasonTooLarge:
		m.rejections.WithLabelValues(key, ReasonTPM).Inc()
	}
	for _, h := range x.policy {
		m.policy.WithLabelValues(h.Rule, h.Action).Inc()
	}
	if x.errMsg == codeUpstream || x.upstreamStatus >= 500 {
		m.upstreamErrors.Inc()
	}
	if x.key != nil && key != labelUnknownKey {
		if x.promptTokens > 0 {
			m.tokens.WithLabelValues(key, "prompt").Add(float64(x.promptTokens))
		}
		if x.completionTokens > 0 {
			m.tokens.WithLabelValues(key, "completion").Add(float64(x.completionTokens))
		}
	}
}

// Peeker is implemented by Stores that can tell a key's remaining budget
// without taking any of it. The guard exports
// glmctl_guard_rate_limit_remaining_requests and _tokens from it at scrape
// time; a Store without it exports neither.
type Peeker interface {
	// Peek reports what the x-ratelimit-* headers would report now for a
	// request of key under these limits, without changing anything.
	Peek(ctx context.Context, key string, l Limit, g GlobalLimit) (RateStatus, error)
}

// SlotCounter is implemented by Stores that can tell how many concurrency
// slots a key holds now (across every guard sharing the store). The guard
// exports glmctl_guard_rate_limit_concurrency_in_use from it at scrape time
// for keys with a concurrency limit.
type SlotCounter interface {
	SlotsInUse(ctx context.Context, key string) (int64, error)
}

// remainingCollector computes the remaining requests and tokens of every key
// at scrape time, from the limiter's state, and the concurrency slots each
// key holds.
type remainingCollector struct {
	g        *Guard
	requests *prometheus.Desc
	tokens   *prometheus.Desc
	slots    *prometheus.Desc
}

func newRemainingCollector(g *Guard) *remainingCollector {
	return &remainingCollector{
		g: g,
		requests: prometheus.NewDesc("glmctl_guard_rate_limit_remaining_requests",
			"Requests the key may send now: its rpm budget left, or the global rpm budget when the key has no rpm limit (absent: unlimited).",
			[]string{"key"}, nil),
		tokens: prometheus.NewDesc("glmctl_guard_rate_limit_remaining_tokens",
			"Tokens the key may reserve now under its tpm limit (absent: unlimited).",
			[]string{"key"}, nil),
		slots: prometheus.NewDesc("glmctl_guard_rate_limit_concurrency_in_use",
			"Concurrency slots the key holds now, on every guard sharing the limits store (absent: no concurrency limit).",
			[]string{"key"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *remainingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.tokens
	ch <- c.slots
}

// Collect implements prometheus.Collector.
func (c *remainingCollector) Collect(ch chan<- prometheus.Metric) {
	p, ok := c.g.store.(Peeker)
	if !ok || c.g.m == nil {
		return
	}
	s := c.g.snap.Load()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, k := range c.g.m.keyNames() {
		st, err := p.Peek(ctx, k, s.limits.For(k), s.global)
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				c.g.log.Warn("limit store could not report remaining budgets", "error", err)
			}
			return
		}
		if st.LimitRequests > 0 {
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.GaugeValue, float64(st.RemainingRequests), k)
		}
		if st.LimitTokens > 0 {
			ch <- prometheus.MustNewConstMetric(c.tokens, prometheus.GaugeValue, float64(st.RemainingTokens), k)
		}
		if sc, ok := c.g.store.(SlotCounter); ok && s.limits.For(k).Concurrency > 0 {
			n, err := sc.SlotsInUse(ctx, k)
			if err != nil {
				return // the store's errors are logged by Peek's path above
			}
			ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(n), k)
		}
	}
}

// readyCollector exports glmctl_guard_model_ready at scrape time, labelled
// with the program in force (guard.program may change on reload), so an
// alert on the model need not know the program's name.
type readyCollector struct {
	g    *Guard
	desc *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *readyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *readyCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.snap.Load()
	if s == nil {
		return // scraped while New is still loading the files
	}
	program := s.program
	v := 0.0
	if c.g.modelReady(program) {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, program)
}

// setPolicy makes the policy series match the rules in force: each rule and
// built-in check has its series from the load at 0, removed ones lose theirs.
func (m *metrics) setPolicy(p *Policy) {
	m.policy.Reset()
	for _, rule := range p.RuleNames() {
		for _, action := range []string{audit.PolicyReject, audit.PolicyFlag} {
			m.policy.WithLabelValues(rule, action)
		}
	}
}
