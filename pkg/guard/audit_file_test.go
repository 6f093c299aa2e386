package guard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/pkg/audit"
	"github.com/glmctl/glmctl/pkg/config"
)

// The real audit writer satisfies the guard's Auditor.
var _ Auditor = (*audit.Writer)(nil)

func openAuditFile(t testing.TB) (*audit.Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(&config.Audit{Path: path, OnError: "reject", Fsync: "interval", Level: "metadata"}, audit.Options{})
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
	waitFor(t, 5*time.Second, "completed record in the file", func() bool {
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

// BenchmarkGuardAuditFile is BenchmarkGuard with the real audit writer
// (fsync = interval) behind it.
func BenchmarkGuardAuditFile(b *testing.B) {
	w, _ := openAuditFile(b)
	h := newHarness(b, withAuditor(w), withLimits(`{"rate_limits": {"default": {"rpm": 1000000000, "tpm": 1000000000, "concurrency": 100000}}}`))
	runBench(b, h.url, keyUser2)
}
