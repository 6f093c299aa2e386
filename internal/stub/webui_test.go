package stub

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/testutil"
)

// mustStartWebUI runs a web UI until the test ends.
func mustStartWebUI(tb testing.TB, opts WebUIOptions) *WebUI {
	tb.Helper()
	opts.Listen = "127.0.0.1:0"
	u := NewWebUI(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("webui run: %v", err)
		}
	})
	select {
	case <-u.Ready():
	case err := <-done:
		tb.Fatalf("webui run: %v", err)
	case <-time.After(5 * time.Second):
		tb.Fatal("webui not ready")
	}
	return u
}

func chatUI(tb testing.TB, u *WebUI, body string) (int, map[string]any) {
	tb.Helper()
	resp, err := http.Post("http://"+u.Addr().String()+"/api/chat", "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		tb.Fatalf("decode: %v", err)
	}
	return resp.StatusCode, out
}

func TestWebUIRelay(t *testing.T) {
	const key = "sk-ui-key-789xyz"
	v := mustStartVLLM(t, VLLMOptions{APIKey: key})
	keyFile := filepath.Join(t.TempDir(), "ui.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	u := mustStartWebUI(t, WebUIOptions{
		APIBase:    rootURL(v) + "/v1/",
		APIKeyFile: keyFile,
		Logger:     hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace}),
	})
	base := "http://" + u.Addr().String()

	t.Run("page", func(t *testing.T) {
		resp, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(b)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(page, "<form") {
			t.Fatalf("page: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if strings.Contains(page, key) {
			t.Error("the page carries the API key")
		}
		if ext := regexp.MustCompile(`(src|href)=["']?(https?:)?//`).FindString(page); ext != "" {
			t.Errorf("page loads an external asset: %s", ext)
		}
	})
	t.Run("health", func(t *testing.T) {
		resp, err := http.Get(base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("health %d", resp.StatusCode)
		}
	})
	t.Run("chat", func(t *testing.T) {
		status, out := chatUI(t, u, `{"message":"Hello model"}`)
		if status != 200 || out["reply"] != ReplyText(DefaultReplyTokens) || out["model"] != DefaultModel {
			t.Fatalf("chat: %d %v", status, out)
		}
		if got := v.Stats().Paths["/v1/chat/completions"]; got != 1 {
			t.Errorf("upstream saw %d chats, want 1", got)
		}
	})
	t.Run("empty message", func(t *testing.T) {
		if status, out := chatUI(t, u, `{"message":" "}`); status != 400 {
			t.Errorf("empty message: %d %v", status, out)
		}
	})
	t.Run("rejected key is not relayed", func(t *testing.T) {
		if err := os.WriteFile(keyFile, []byte("sk-wrong-key-000"), 0o600); err != nil {
			t.Fatal(err)
		}
		status, out := chatUI(t, u, `{"message":"hi"}`)
		if status != http.StatusBadGateway || strings.Contains(out["error"].(string), "sk-") {
			t.Errorf("wrong key: %d %v", status, out)
		}
		if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
			t.Fatal(err)
		}
		if status, out := chatUI(t, u, `{"message":"hi"}`); status != 200 {
			t.Errorf("after restoring the key (re-read per chat): %d %v", status, out)
		}
	})
	t.Run("upstream errors are relayed", func(t *testing.T) {
		u2 := mustStartWebUI(t, WebUIOptions{APIBase: rootURL(v) + "/v1", APIKey: key, Model: "other"})
		status, out := chatUI(t, u2, `{"message":"hi"}`)
		if status != 404 || !strings.Contains(out["error"].(string), "does not exist") {
			t.Errorf("unknown model: %d %v", status, out)
		}
	})
	t.Run("upstream down", func(t *testing.T) {
		u3 := mustStartWebUI(t, WebUIOptions{APIBase: "http://127.0.0.1:1/v1", APIKey: key})
		if status, out := chatUI(t, u3, `{"message":"hi"}`); status != http.StatusBadGateway {
			t.Errorf("upstream down: %d %v", status, out)
		}
	})
	if strings.Contains(logs.String(), key) || strings.Contains(logs.String(), "sk-wrong") {
		t.Errorf("a key reached the log:\n%s", logs.String())
	}
}
