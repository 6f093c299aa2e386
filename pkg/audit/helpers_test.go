package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/testutil"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// testConfig returns an audit config writing into a fresh temp dir.
func testConfig(tb testing.TB) *config.Audit {
	tb.Helper()
	return &config.Audit{
		Path:    filepath.Join(tb.TempDir(), "audit", "audit.log"),
		OnError: OnErrorReject,
		Fsync:   FsyncNever,
		Level:   LevelMetadata,
		Rotate:  config.Rotate{Keep: 0},
	}
}

// testLogger captures log output for assertions.
type testLogger struct {
	hclog.Logger
	buf *testutil.SyncBuffer
}

func newTestLogger(tb testing.TB) testLogger {
	b := &testutil.SyncBuffer{}
	return testLogger{hclog.New(&hclog.LoggerOptions{Output: b, Level: hclog.Debug}), b}
}

// mustOpen opens a writer closed at test end.
func mustOpen(tb testing.TB, cfg *config.Audit, opts Options) *Writer {
	tb.Helper()
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	w, err := Open(cfg, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { w.Close() })
	return w
}

// rec makes a distinguishable request record.
func rec(i int) *Record {
	return &Record{
		Stage: StageReceived, RequestID: fmt.Sprintf("req-%06d", i), Key: "user1", Role: "user",
		Client: "10.0.0.7", Method: "POST", Path: "/v1/chat/completions", Model: "glm-4.7-flash",
		UserAgent: "openai-go/3", BytesIn: int64(100 + i),
	}
}

// mustWrite writes n records numbered from start.
func mustWrite(tb testing.TB, w *Writer, start, n int) {
	tb.Helper()
	for i := start; i < start+n; i++ {
		if err := w.Write(context.Background(), rec(i)); err != nil {
			tb.Fatalf("Write %d: %v", i, err)
		}
	}
}

// readLines returns the lines of a file (without newlines).
func readLines(tb testing.TB, name string) []string {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// writeLines replaces a file's content with lines.
func writeLines(tb testing.TB, name string, lines []string) {
	tb.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(name, b.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// mustVerify runs Verify and fails on a read error.
func mustVerify(tb testing.TB, files []string, opts VerifyOptions) *VerifyReport {
	tb.Helper()
	rep, err := Verify(files, opts)
	if err != nil {
		tb.Fatalf("Verify: %v", err)
	}
	return rep
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// copyDir copies the files of src into a new temp dir and returns it.
func copyDir(tb testing.TB, src string) string {
	tb.Helper()
	dst := tb.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}
