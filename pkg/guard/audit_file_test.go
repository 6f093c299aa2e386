package guard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/audit"
)

// The real audit writer satisfies the guard's Auditor.
var _ Auditor = (*audit.Writer)(nil)

func openAuditFile(t testing.TB) (*audit.Writer, string) {
	t.Helper()
	return openAuditFileLevel(t, audit.LevelMetadata)
}

func openAuditFileLevel(t testing.TB, level string) (*audit.Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(&config.Audit{Path: path, OnError: "reject", Fsync: "interval", Level: level}, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w, path
}

// TestAuditFileNeverHoldsAKey runs requests (accepted and refused) through
// the guard into the real audit writer and checks the log.
func TestAuditFileNeverHoldsAKey(t *testing.T) {
	w, path := openAuditFile(t)
	h := newHarness(t, withAuditor(w))
	h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("m", 10, false))
	h.do(t, "POST", "/v1/chat/completions", "sk-wrong-0123456789abcdefghij", chatBody("m", 10, false))
	resp, _ := h.do(t, "POST", "/v1/chat/completions", keyUser2, chatBody("glm-4.7-flash", 10, true))
	id := resp.Header.Get("X-Request-Id")
	waitFor(t, 15*time.Second, "completed record in the file", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), id) == 2
	})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, k := range []string{keyUser1, keyUser2, "sk-wrong", "0123456789abcdef"} {
		if strings.Contains(log, k) {
			t.Fatalf("audit log holds key material %q", k)
		}
	}
	if n := strings.Count(log, `"stage":"received"`); n != 2 {
		t.Fatalf("%d received records, want 2:\n%s", n, log)
	}
	if n := strings.Count(log, `"stage":"completed"`); n != 3 {
		t.Fatalf("%d completed records, want 3:\n%s", n, log)
	}
}

// TestAuditLevelsStoreBodies: audit level "request" puts the client's
// request body (as sent, not as rewritten for upstream) in the received
// record; "request_response" puts the response body, streams included, in
// the completed record; "metadata" stores neither. Long bodies are cut.
func TestAuditLevelsStoreBodies(t *testing.T) {
	records := func(t *testing.T, path, id string) map[string]audit.Record {
		t.Helper()
		out := map[string]audit.Record{}
		waitFor(t, 15*time.Second, "both records of "+id, func() bool {
			recs, err := audit.Tail([]string{path}, 100, audit.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.RequestID == id {
					out[r.Stage] = r
				}
			}
			return len(out) == 2
		})
		return out
	}
	for _, level := range []string{audit.LevelMetadata, audit.LevelRequest, audit.LevelRequestResponse} {
		t.Run(level, func(t *testing.T) {
			w, path := openAuditFileLevel(t, level)
			h := newHarness(t, withAuditor(w), func(cfg *config.Guard, _ *harness) { cfg.MaxBody = 1 << 20 })
			for _, stream := range []bool{false, true} {
				body := chatBody("glm-4.7-flash", 10, stream)
				resp, got := h.do(t, "POST", "/v1/chat/completions", keyUser2, body)
				if resp.StatusCode != 200 {
					t.Fatalf("%d %s", resp.StatusCode, got)
				}
				recs := records(t, path, resp.Header.Get("X-Request-Id"))
				req, res := recs[audit.StageReceived].RequestBody, recs[audit.StageCompleted].ResponseBody
				wantReq := level != audit.LevelMetadata
				if (req != "") != wantReq || (wantReq && (!strings.Contains(req, `"messages"`) || strings.Contains(req, "include_usage"))) {
					t.Errorf("stream %v: request body %q (want the client's own body: %v)", stream, req, wantReq)
				}
				wantRes := level == audit.LevelRequestResponse
				if (res != "") != wantRes || (wantRes && res != string(got)) {
					t.Errorf("stream %v: response body %q, want %v (what the client got: %q)", stream, res, wantRes, got)
				}
			}
			if level != audit.LevelRequestResponse {
				return
			}
			big := map[string]any{"model": "glm-4.7-flash", "max_tokens": 10,
				"messages": []map[string]string{{"role": "user", "content": strings.Repeat("x", maxAuditBody)}}}
			resp, got := h.do(t, "POST", "/v1/chat/completions", keyUser2, big)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, got)
			}
			rec := records(t, path, resp.Header.Get("X-Request-Id"))[audit.StageReceived]
			if !strings.HasSuffix(rec.RequestBody, truncatedMark) || len(rec.RequestBody) != maxAuditBody+len(truncatedMark) {
				t.Errorf("a long body is kept whole or cut wrong: %d bytes", len(rec.RequestBody))
			}
		})
	}
}

// BenchmarkGuardAuditFile is BenchmarkGuard with the real audit writer
// (fsync = interval) behind it.
func BenchmarkGuardAuditFile(b *testing.B) {
	w, _ := openAuditFile(b)
	h := newHarness(b, withAuditor(w), withLimits(`{"rate_limits": {"default": {"rpm": 1000000000, "tpm": 1000000000, "concurrency": 100000}}}`))
	runBench(b, h.url, keyUser2)
}
