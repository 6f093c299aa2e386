package stub

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of VLLMOptions.
const (
	DefaultModel           = "glm-4.7-flash"
	DefaultVLLMListen      = "127.0.0.1:8000"
	DefaultMaxModelLen     = 4096
	DefaultReplyTokens     = 16
	DefaultSocketMode      = 0o660
	DefaultShutdownTimeout = 5 * time.Second
	maxRequestBody         = 16 << 20
)

// VLLMOptions configures the stand-in vLLM server. The zero value of each
// field means its default.
type VLLMOptions struct {
	// Listen is the TCP address ("host:port"; port 0 picks one). Ignored when
	// UDS is set. Default DefaultVLLMListen.
	Listen string
	// UDS serves on this unix socket instead of TCP, like vLLM's --uds. A
	// stale socket file is removed first.
	UDS string
	// SocketMode is the unix socket's file mode. Default 0660.
	SocketMode os.FileMode
	// Model is the served model name (/v1/models lists it; requests naming
	// another model get 404). Default DefaultModel.
	Model string
	// APIKey, when set, is required as a Bearer token on /v1 routes only —
	// exactly vLLM's --api-key, which leaves its control routes open.
	APIKey string
	// LoadTime is the slow start: the address is bound but nothing listens
	// (connections are refused) until it has passed.
	LoadTime time.Duration
	// TTFT is the delay before the first token; ITL the delay between tokens.
	TTFT, ITL time.Duration
	// MaxModelLen bounds prompt + max_tokens (400 beyond it). Default 4096.
	MaxModelLen int
	// ReplyTokens is how many tokens a reply has when max_tokens does not cut
	// it short (one token is one word). Default 16.
	ReplyTokens int
	// FailAfter > 0 kills the "engine" once that many requests (of any kind,
	// health probes included) have been served: /health answers 503 and
	// model routes 500 from then on.
	FailAfter int
	// ExitAfter > 0 makes Run stop abruptly that long after it started and
	// return an *ExitError carrying ExitCode — a crash (vLLM exits 0 when its
	// engine dies). A unix socket file is left behind, as after a crash.
	ExitAfter time.Duration
	// ExitCode is the code carried by the *ExitError of ExitAfter.
	ExitCode int
	// ShutdownTimeout bounds the graceful stop when ctx ends. Default 5s.
	ShutdownTimeout time.Duration
	// Workers > 0 builds vLLM's process tree: the server spawns an engine
	// (argv[0] "VLLM::EngineCore") that spawns Workers workers
	// ("VLLM::Worker_TP0"…), all in the server's process group, sharing its
	// stdout and stderr, none tied to its parent's life: a graceful stop or a
	// simulated crash stops them, SIGKILL of the server alone orphans them
	// (vllm#55510), and if the engine dies the server exits 0 (vllm#48966).
	// They are re-executions of the running binary, so it must be one whose
	// main runs VLLMCommand (vllm-stub, `glmctl stub vllm`).
	Workers int
	// EventsFile, when set, gets one line appended per lifecycle event,
	// "EVENT UNIX_NANOS PID" with EVENT one of start (Run began), ready
	// (accepting connections), crash (ExitAfter) and stop (graceful stop):
	// benchmarks measure crash-to-restart latency from it.
	EventsFile string
	// Logger receives one line per request (health probes at debug). Default:
	// discard.
	Logger hclog.Logger
}

// ExitError is returned by Run when ExitAfter elapsed; the command exits
// with Code.
type ExitError struct {
	// Code is the process exit code to use.
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("simulated crash: exit code %d", e.Code) }

// Stats counts what a VLLM served; tests use it to see what reached the
// upstream.
type Stats struct {
	// Requests is every HTTP request, health probes included.
	Requests int64
	// Paths counts requests per URL path.
	Paths map[string]int64
	// Running is the number of generations in progress.
	Running int64
	// PromptTokens and GenerationTokens total the tokens of all generations
	// (generated tokens are counted as they are produced).
	PromptTokens, GenerationTokens int64
	// Cancelled counts generations stopped because the client went away.
	Cancelled int64
}

// VLLM is a stand-in for vLLM's OpenAI-compatible API server. Run it once.
type VLLM struct {
	opts    VLLMOptions
	log     hclog.Logger
	created int64
	handler http.Handler
	bound   chan struct{}
	ready   chan struct{}
	started atomic.Bool

	mu       sync.Mutex
	addr     net.Addr
	stats    Stats
	paused   bool
	sleeping bool
}

// NewVLLM returns a stand-in vLLM with opts' defaults filled in.
func NewVLLM(opts VLLMOptions) *VLLM {
	if opts.Listen == "" {
		opts.Listen = DefaultVLLMListen
	}
	if opts.SocketMode == 0 {
		opts.SocketMode = DefaultSocketMode
	}
	if opts.Model == "" {
		opts.Model = DefaultModel
	}
	if opts.MaxModelLen <= 0 {
		opts.MaxModelLen = DefaultMaxModelLen
	}
	if opts.ReplyTokens <= 0 {
		opts.ReplyTokens = DefaultReplyTokens
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	v := &VLLM{
		opts:    opts,
		log:     opts.Logger,
		created: time.Now().Unix(),
		bound:   make(chan struct{}),
		ready:   make(chan struct{}),
		stats:   Stats{Paths: map[string]int64{}},
	}
	v.handler = v.routes()
	return v
}

// Handler serves the stand-in's routes without any listener or slow start.
func (v *VLLM) Handler() http.Handler { return v.handler }

// Bound is closed once the address is bound (connections are refused until
// Ready); Addr is valid from then on.
func (v *VLLM) Bound() <-chan struct{} { return v.bound }

// Ready is closed once the server accepts connections (after LoadTime).
func (v *VLLM) Ready() <-chan struct{} { return v.ready }

// Addr is the bound address (a *net.TCPAddr or *net.UnixAddr), nil before
// Bound is closed.
func (v *VLLM) Addr() net.Addr {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.addr
}

// Stats returns a copy of the counters.
func (v *VLLM) Stats() Stats {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.stats
	s.Paths = make(map[string]int64, len(v.stats.Paths))
	for k, n := range v.stats.Paths {
		s.Paths[k] = n
	}
	return s
}

// Run binds the address, waits LoadTime with nothing listening, then serves
// until ctx ends (graceful stop, nil) or ExitAfter elapses (abrupt stop,
// *ExitError).
func (v *VLLM) Run(ctx context.Context) error {
	if v.started.Swap(true) {
		return errors.New("stand-in vllm: Run called twice")
	}
	v.event("start")
	var crash <-chan time.Time
	if v.opts.ExitAfter > 0 {
		t := time.NewTimer(v.opts.ExitAfter)
		defer t.Stop()
		crash = t.C
	}
	crashed := func() error {
		v.log.Warn("simulated crash", "exit_code", v.opts.ExitCode)
		v.event("crash")
		return &ExitError{Code: v.opts.ExitCode}
	}

	var (
		sock   *boundSocket
		engine *engineProc
		err    error
	)
	if v.opts.Workers > 0 {
		if engine, err = v.startEngine(); err != nil {
			return err
		}
		defer engine.stop(v.opts.ShutdownTimeout)
	}
	engineDied := func() error {
		v.log.Error("engine core died; shutting down (exit 0, like vLLM)")
		v.event("crash")
		return &ExitError{Code: 0}
	}
	if v.opts.UDS != "" {
		sock, err = bindUnix(v.opts.UDS, v.opts.SocketMode)
	} else {
		sock, err = bindTCP(v.opts.Listen)
	}
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.addr = sock.addr
	v.mu.Unlock()
	close(v.bound)
	removeSocket := func() {
		if sock.path != "" {
			_ = os.Remove(sock.path)
		}
	}

	if v.opts.LoadTime > 0 {
		v.log.Info("loading model weights; connections are refused meanwhile", "model", v.opts.Model, "addr", sock.addr.String(), "load_time", v.opts.LoadTime)
		t := time.NewTimer(v.opts.LoadTime)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			sock.close()
			removeSocket()
			v.event("stop")
			return nil
		case <-crash:
			t.Stop()
			sock.close()
			return crashed()
		case <-engine.exited():
			t.Stop()
			sock.close()
			return engineDied()
		}
	}
	ln, err := sock.listen()
	if err != nil {
		removeSocket()
		return err
	}
	srv := &http.Server{
		Handler:           v.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          v.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	close(v.ready)
	v.event("ready")
	v.log.Info("serving", "model", v.opts.Model, "addr", sock.addr.String())

	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.opts.ShutdownTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		if err != nil {
			_ = srv.Close()
		}
		removeSocket()
		<-served
		v.log.Info("stopped")
		v.event("stop")
		return nil
	case <-crash:
		_ = srv.Close()
		<-served
		return crashed()
	case <-engine.exited():
		_ = srv.Close()
		<-served
		return engineDied()
	case err := <-served:
		removeSocket()
		return fmt.Errorf("serve: %w", err)
	}
}

// event appends a lifecycle event to EventsFile.
func (v *VLLM) event(name string) {
	if v.opts.EventsFile == "" {
		return
	}
	line := fmt.Sprintf("%s %d %d\n", name, time.Now().UnixNano(), os.Getpid())
	f, err := os.OpenFile(v.opts.EventsFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		v.log.Error("write events file", "error", err)
	}
}

// routes builds the handler: vLLM's OpenAI routes, its control and utility
// routes, and FastAPI-style 404/405 answers for the rest.
func (v *VLLM) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", only(http.MethodGet, v.health))
	mux.HandleFunc("/ping", v.health)
	mux.HandleFunc("/v1/models", only(http.MethodGet, v.models))
	mux.HandleFunc("/v1/chat/completions", only(http.MethodPost, v.engine(v.chat)))
	mux.HandleFunc("/v1/completions", only(http.MethodPost, v.engine(v.completions)))
	mux.HandleFunc("/v1/embeddings", only(http.MethodPost, v.engine(v.embeddings)))
	mux.HandleFunc("/invocations", only(http.MethodPost, v.engine(v.invocations)))
	mux.HandleFunc("/tokenize", only(http.MethodPost, v.tokenize))
	mux.HandleFunc("/detokenize", only(http.MethodPost, v.detokenize))
	mux.HandleFunc("/version", v.version)
	mux.HandleFunc("/load", v.load)
	mux.HandleFunc("/metrics", v.metrics)
	mux.HandleFunc("/pause", v.setFlag(&v.paused, true, "paused"))
	mux.HandleFunc("/resume", v.setFlag(&v.paused, false, "paused"))
	mux.HandleFunc("/is_paused", v.getFlag(&v.paused, "is_paused"))
	mux.HandleFunc("/sleep", v.setFlag(&v.sleeping, true, "sleeping"))
	mux.HandleFunc("/wake_up", v.setFlag(&v.sleeping, false, "sleeping"))
	mux.HandleFunc("/is_sleeping", v.getFlag(&v.sleeping, "is_sleeping"))
	mux.HandleFunc("/collective_rpc", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"results": []any{}})
	})
	mux.HandleFunc("/update_weights", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
	})
	return v.observe(v.authorize(mux))
}

// only answers 405 like FastAPI unless the request uses method.
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
			w.Header().Set("Allow", method)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": "Method Not Allowed"})
			return
		}
		h(w, r)
	}
}

// observe counts and logs every request.
func (v *VLLM) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.mu.Lock()
		v.stats.Requests++
		v.stats.Paths[r.URL.Path]++
		v.mu.Unlock()
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		log := v.log.Info
		if r.URL.Path == "/health" {
			log = v.log.Debug
		}
		log("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start).Round(time.Microsecond))
	})
}

// authorize is vLLM's --api-key: a Bearer key on /v1 routes only.
func (v *VLLM) authorize(next http.Handler) http.Handler {
	if v.opts.APIKey == "" {
		return next
	}
	want := []byte("Bearer " + v.opts.APIKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1") && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// dead reports whether FailAfter has killed the engine.
func (v *VLLM) dead() bool {
	if v.opts.FailAfter <= 0 {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stats.Requests > int64(v.opts.FailAfter)
}

// engine guards a model route: 500 once the engine is dead.
func (v *VLLM) engine(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v.dead() {
			writeError(w, http.StatusInternalServerError, "InternalServerError", "", "EngineCore encountered an issue. See stack trace (above) for the root cause.")
			return
		}
		h(w, r)
	}
}

func (v *VLLM) health(w http.ResponseWriter, _ *http.Request) {
	if v.dead() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (v *VLLM) models(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list",
		"data": []map[string]any{{
			"id":            v.opts.Model,
			"object":        "model",
			"created":       v.created,
			"owned_by":      "vllm",
			"root":          v.opts.Model,
			"parent":        nil,
			"max_model_len": v.opts.MaxModelLen,
		}},
	})
}

func (v *VLLM) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": "0.11.0"})
}

func (v *VLLM) load(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]int64{"server_load": v.Stats().Running})
}

// metrics writes a few of vLLM's Prometheus series in the text format.
func (v *VLLM) metrics(w http.ResponseWriter, _ *http.Request) {
	s := v.Stats()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	lbl := fmt.Sprintf("{model_name=%q}", v.opts.Model)
	fmt.Fprintf(w, "# HELP vllm:num_requests_running Number of requests in model execution batches.\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running%s %d\n", lbl, s.Running)
	fmt.Fprintf(w, "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total%s %d\n", lbl, s.PromptTokens)
	fmt.Fprintf(w, "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total%s %d\n", lbl, s.GenerationTokens)
}

// setFlag serves /pause, /resume, /sleep and /wake_up: they flip a state
// that /is_paused and /is_sleeping report, and answer 200.
func (v *VLLM) setFlag(flag *bool, to bool, what string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		v.mu.Lock()
		*flag = to
		v.mu.Unlock()
		v.log.Warn("control route called", what, to)
		writeJSON(w, http.StatusOK, map[string]bool{what: to})
	}
}

func (v *VLLM) getFlag(flag *bool, name string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		v.mu.Lock()
		b := *flag
		v.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]bool{name: b})
	}
}

// statusRecorder remembers the status; it keeps Flush working through
// http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errClientGone reports a generation stopped because its client left.
var errClientGone = errors.New("client went away")
