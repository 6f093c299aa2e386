package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// standIn is a small OpenAI-speaking upstream for the tests: chat and text
// completions (JSON and SSE with the usage chunk when asked), embeddings,
// models, and a vLLM control route that must never be reached.
//
// Model names steer it: "hold" waits until release is closed (to keep
// requests in flight), "slow" streams a chunk every 20 ms until the client
// goes away, "fail" answers 500.
type standIn struct {
	srv      *http.Server
	url      string // http://127.0.0.1:port or unix:///path
	hits     atomic.Int64
	conns    atomic.Int64 // connections accepted
	inFlight atomic.Int64
	release  chan struct{}

	mu          sync.Mutex
	last        *http.Request
	lastBody    map[string]any
	controlHits int
	cancelledAt time.Time
	onRequest   func(r *http.Request) // called before answering
}

const promptTokens, completionTokens = 11, 7

func newStandIn(t testing.TB, unix bool) *standIn {
	t.Helper()
	s := &standIn{release: make(chan struct{})}
	var ln net.Listener
	var err error
	if unix {
		sock := filepath.Join(t.TempDir(), "vllm.sock")
		ln, err = net.Listen("unix", sock)
		s.url = "unix://" + sock
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			s.url = "http://" + ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		}}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() {
		s.releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
	})
	return s
}

func (s *standIn) releaseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// rearm makes "hold" requests wait again.
func (s *standIn) rearm() {
	s.mu.Lock()
	s.release = make(chan struct{})
	s.mu.Unlock()
}

func (s *standIn) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	var body map[string]any
	if r.Method == http.MethodPost {
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
	}
	s.mu.Lock()
	s.last, s.lastBody = r, body
	hook := s.onRequest
	s.mu.Unlock()
	if hook != nil {
		hook(r)
	}
	switch r.URL.Path {
	case "/health":
		w.WriteHeader(http.StatusOK)
	case "/v1/models":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"glm-4.7-flash","object":"model"}]}`)
	case "/v1/chat/completions", "/v1/completions":
		s.complete(w, r, body)
	case "/v1/embeddings":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"m","usage":{"prompt_tokens":5,"total_tokens":5}}`)
	default:
		s.mu.Lock()
		s.controlHits++
		s.mu.Unlock()
		_, _ = io.WriteString(w, "control route reached")
	}
}

func (s *standIn) complete(w http.ResponseWriter, r *http.Request, body map[string]any) {
	model, _ := body["model"].(string)
	switch model {
	case "hold":
		s.mu.Lock()
		release := s.release
		s.mu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
	case "fail":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":{"message":"engine dead","type":"server_error","param":null,"code":null}}`)
		return
	}
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, promptTokens, completionTokens, promptTokens+completionTokens)
	stream, _ := body["stream"].(bool)
	if !stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":%s}`, model, usage)
		return
	}
	includeUsage := false
	if so, ok := body["stream_options"].(map[string]any); ok {
		includeUsage, _ = so["include_usage"].(bool)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := http.NewResponseController(w)
	chunk := func(content string) {
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", model, content)
		_ = fl.Flush()
	}
	if model == "slow" {
		for {
			chunk("tick ")
			select {
			case <-r.Context().Done():
				s.mu.Lock()
				s.cancelledAt = time.Now()
				s.mu.Unlock()
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	for _, c := range []string{"Hel", "lo ", "there"} {
		chunk(c)
	}
	if includeUsage {
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[],\"usage\":%s}\n\n", model, usage)
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
}

func (s *standIn) lastRequest() (*http.Request, map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.lastBody
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestEscapedPath: the decoded path the guard checked is escaped again for
// the upstream's request line; no byte of it can end the line.
func TestEscapedPath(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/chat/completions":   "/v1/chat/completions",
		"/v1/models/glm-4.7_x~1": "/v1/models/glm-4.7_x~1",
		"/v1/models/a b":         "/v1/models/a%20b",
		"/v1/models/a\r\nX: y":   "/v1/models/a%0D%0AX:%20y",
		"/v1/models/é?#":         "/v1/models/%C3%A9%3F%23",
	} {
		if got := escapedPath(in); got != want {
			t.Errorf("escapedPath(%q) = %q, want %q", in, got, want)
		}
	}
}
