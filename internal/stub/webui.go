package stub

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of WebUIOptions.
const (
	DefaultWebUIListen = "127.0.0.1:7860"
	DefaultAPIBase     = "http://127.0.0.1:8000/v1"
	DefaultChatTimeout = 5 * time.Minute
)

//go:embed webui.html
var chatPage []byte

// WebUIOptions configures the stand-in web UI. The zero value of each field
// means its default.
type WebUIOptions struct {
	// Listen is the TCP address. Default DefaultWebUIListen.
	Listen string
	// APIBase is the OpenAI-compatible base URL, with /v1. Default
	// DefaultAPIBase.
	APIBase string
	// APIKeyFile holds the API key; it is read again on every chat, so a
	// rotated key is picked up without a restart. It wins over APIKey.
	APIKeyFile string
	// APIKey is used when APIKeyFile is empty.
	APIKey string
	// Model is the model named in chat requests. Default DefaultModel.
	Model string
	// Timeout bounds one upstream chat request. Default DefaultChatTimeout.
	Timeout time.Duration
	// Client makes the upstream requests. Default: a client with Timeout.
	Client *http.Client
	// ShutdownTimeout bounds the graceful stop. Default 5s.
	ShutdownTimeout time.Duration
	// Logger receives one line per request. Default: discard.
	Logger hclog.Logger
}

// WebUI is a stand-in chat web UI: it serves a self-contained page and
// relays its messages to the API with a key the browser never sees.
type WebUI struct {
	opts    WebUIOptions
	log     hclog.Logger
	client  *http.Client
	handler http.Handler
	ready   chan struct{}
	started atomic.Bool

	mu   sync.Mutex
	addr net.Addr
}

// NewWebUI returns a stand-in web UI with opts' defaults filled in.
func NewWebUI(opts WebUIOptions) *WebUI {
	if opts.Listen == "" {
		opts.Listen = DefaultWebUIListen
	}
	if opts.APIBase == "" {
		opts.APIBase = DefaultAPIBase
	}
	opts.APIBase = strings.TrimRight(opts.APIBase, "/")
	if opts.Model == "" {
		opts.Model = DefaultModel
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultChatTimeout
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	u := &WebUI{opts: opts, log: opts.Logger, client: opts.Client, ready: make(chan struct{})}
	if u.client == nil {
		u.client = &http.Client{Timeout: opts.Timeout}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", u.page)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /api/chat", u.chat)
	u.handler = u.observe(mux)
	return u
}

// Handler serves the UI's routes.
func (u *WebUI) Handler() http.Handler { return u.handler }

// Ready is closed once the UI accepts connections; Addr is valid then.
func (u *WebUI) Ready() <-chan struct{} { return u.ready }

// Addr is the listening address, nil before Ready is closed.
func (u *WebUI) Addr() net.Addr {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.addr
}

// Run serves until ctx ends, then stops gracefully.
func (u *WebUI) Run(ctx context.Context) error {
	if u.started.Swap(true) {
		return errors.New("stand-in web UI: Run called twice")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", u.opts.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", u.opts.Listen, err)
	}
	u.mu.Lock()
	u.addr = ln.Addr()
	u.mu.Unlock()
	srv := &http.Server{
		Handler:           u.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          u.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	close(u.ready)
	u.log.Info("serving", "addr", ln.Addr().String(), "api_base", u.opts.APIBase)
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.opts.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		<-served
		return nil
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
}

func (u *WebUI) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		log := u.log.Info
		if r.URL.Path == "/health" {
			log = u.log.Debug
		}
		log("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start).Round(time.Microsecond))
	})
}

func (u *WebUI) page(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	_, _ = w.Write(chatPage)
}

// key returns the API key, re-reading the key file.
func (u *WebUI) key() (string, error) {
	if u.opts.APIKeyFile == "" {
		return u.opts.APIKey, nil
	}
	b, err := os.ReadFile(u.opts.APIKeyFile)
	if err != nil {
		return "", fmt.Errorf("read api key file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// chatReply is what POST /api/chat answers.
type chatReply struct {
	Reply     string `json:"reply"`
	Model     string `json:"model"`
	Usage     *usage `json:"usage,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// chat relays {"message": …} to the API's /chat/completions.
func (u *WebUI) chat(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Message string `json:"message"`
	}
	if err := decodeBody(r, 1<<20, &in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if strings.TrimSpace(in.Message) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "message is empty"})
		return
	}
	key, err := u.key()
	if err != nil {
		u.log.Error("no api key", "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "the UI cannot read its API key; see its log"})
		return
	}
	body, _ := json.Marshal(map[string]any{
		"model":    u.opts.Model,
		"messages": []map[string]string{{"role": "user", "content": in.Message}},
	})
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u.opts.APIBase+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "build request: " + err.Error()})
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		u.log.Warn("upstream unreachable", "error", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the model API is unreachable"})
		return
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "read upstream reply: " + err.Error()})
		return
	}
	if resp.StatusCode == http.StatusUnauthorized {
		// The API's message may quote part of the key: never relay it.
		u.log.Warn("the model API rejected the UI's key", "status", resp.StatusCode)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the model API rejected the UI's key; check the key file"})
		return
	}
	if resp.StatusCode != http.StatusOK {
		writeJSON(w, resp.StatusCode, map[string]string{"error": upstreamError(resp.StatusCode, raw)})
		return
	}
	var out struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage *usage `json:"usage"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Choices) == 0 {
		if err == nil {
			err = errors.New("no choices")
		}
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "unexpected upstream reply: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, chatReply{Reply: out.Choices[0].Message.Content, Model: out.Model, Usage: out.Usage, RequestID: resp.Header.Get("x-request-id")})
}

// upstreamError extracts the message of an OpenAI-style error body.
func upstreamError(status int, raw []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			return obj.Message
		}
		var s string
		if json.Unmarshal(e.Error, &s) == nil && s != "" {
			return s
		}
	}
	return fmt.Sprintf("the model API answered %d %s", status, http.StatusText(status))
}
