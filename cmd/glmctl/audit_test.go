package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/audit"
)

// auditFixture writes 20 records (user1 and user2, statuses 200 and 429)
// and a config naming the log; it returns the config and log paths.
func auditFixture(t *testing.T) (cfgPath, logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "audit.log")
	cfgPath = filepath.Join(dir, "glmctl.hcl")
	if err := os.WriteFile(cfgPath, []byte("audit {\n  path = \""+logPath+"\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := audit.Open(&config.Audit{Path: logPath}, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		r := &audit.Record{Stage: audit.StageCompleted, RequestID: "r" + string(rune('a'+i)), Key: "user1",
			Path: "/v1/chat/completions", Status: 200, LatencyMS: float64(10 + i)}
		if i%2 == 1 {
			r.Key, r.Status, r.Limit = "user2", 429, "rpm"
		}
		if err := w.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return cfgPath, logPath
}

func TestAuditCommands(t *testing.T) {
	cfg, log := auditFixture(t)

	r := glmctl(t, "audit", "verify", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "intact: 20 records") {
		t.Fatalf("verify: %+v", r)
	}
	r = glmctl(t, "audit", "stats", log, "--json", "--since", "1h")
	var st audit.StatsReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Requests != 20 || st.Rejections["limit:rpm"] != 10 {
		t.Fatalf("stats --json: %+v", r)
	}
	r = glmctl(t, "audit", "stats", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "/v1/chat/completions") {
		t.Fatalf("stats: %+v", r)
	}
	r = glmctl(t, "audit", "tail", "-n", "3", "--key", "user2", "--status", "429", "-c", cfg)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != 0 || len(lines) != 3 || !strings.Contains(lines[0], "user2") {
		t.Fatalf("tail: %+v", r)
	}

	// Tampering: exit 1 with the file and line.
	b, _ := os.ReadFile(log)
	os.WriteFile(log, []byte(strings.Replace(string(b), `"status":200`, `"status":201`, 1)), 0o600)
	r = glmctl(t, "audit", "verify", log)
	if r.code != 1 || !strings.Contains(r.stdout, log+":1: edited") {
		t.Fatalf("verify of an edited log: %+v", r)
	}
	r = glmctl(t, "audit", "verify", log, "--json")
	var rep audit.VerifyReport
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Problems[0].Line != 1 {
		t.Fatalf("verify --json: %+v", r)
	}
	// A torn last line is a warning only.
	os.WriteFile(log, append(b, []byte(`{"time":"2026`)...), 0o600)
	r = glmctl(t, "audit", "verify", log)
	if r.code != 0 || !strings.Contains(r.stdout, "torn") {
		t.Fatalf("verify with a torn tail: %+v", r)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90m":                  now.Add(-90 * time.Minute),
		"7d":                   now.AddDate(0, 0, -7),
		"2026-11-20T10:00:00Z": time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseSince("last week", now); err == nil {
		t.Error("parseSince accepted nonsense")
	}
}
