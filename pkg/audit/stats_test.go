package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadStats(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rotate.MaxSize = 2 << 10
	cfg.Rotate.Compress = true
	w := mustOpen(t, cfg, Options{})
	ctx := context.Background()
	old := time.Now().Add(-2 * time.Hour).UTC()
	write := func(r *Record) {
		t.Helper()
		if err := w.Write(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// An old request, outside --since 1h.
	write(&Record{Time: old, Stage: StageCompleted, RequestID: "old", Key: "user2", Path: "/v1/models", Status: 200, LatencyMS: 5})
	for i := 1; i <= 100; i++ {
		id := fmt.Sprintf("r%d", i)
		write(&Record{Stage: StageReceived, RequestID: id, Key: "user1", Path: "/v1/chat/completions"})
		write(&Record{Stage: StageCompleted, RequestID: id, Key: "user1", Client: fmt.Sprintf("10.0.0.%d", i%3),
			Path: "/v1/chat/completions", Model: "glm-4.7-flash", Status: 200, PromptTokens: 10, CompletionTokens: 20,
			LatencyMS: float64(i), TTFTMS: float64(i) / 10})
	}
	write(&Record{Stage: StageReceived, RequestID: "inflight", Key: "user1", Path: "/v1/chat/completions"})
	write(&Record{Stage: StageCompleted, RequestID: "a", Status: 401, Path: "/v1/chat/completions", Error: "invalid_api_key"})
	write(&Record{Stage: StageCompleted, RequestID: "b", Key: "user2", Status: 429, Limit: "tpm", Path: "/v1/chat/completions"})
	write(&Record{Stage: StageCompleted, RequestID: "c", Key: "user2", Status: 413, Path: "/v1/chat/completions"})
	write(&Record{Stage: StageCompleted, RequestID: "d", Key: "user2", Status: 502, Path: "/v1/chat/completions", Error: "upstream down", LatencyMS: 1000})
	write(&Record{Stage: StageAdmin, Action: "key.created", Target: "bob"})
	w.Close()
	// A line that is no record.
	f, _ := os.OpenFile(cfg.Path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n")
	f.Close()

	files, err := Files(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	var gz bool
	for _, f := range files {
		gz = gz || strings.HasSuffix(f, ".gz")
	}
	if !gz { // compression runs in the background; make sure one file is
		if err := gzipFile(files[0]); err != nil {
			t.Fatal(err)
		}
		files[0] += ".gz"
	}
	s, err := ReadStats(files, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"requests", s.Requests, 104},
		{"errors", s.Errors, 1},
		{"rejected", s.Rejected, 3},
		{"unfinished", s.Unfinished, 1},
		{"admin", s.Admin, 1},
		{"bad lines", s.BadLines, 1},
		{"paths", len(s.Paths), 1},
		{"chat calls", s.Paths["/v1/chat/completions"].Calls, 104},
		{"chat max", s.Paths["/v1/chat/completions"].MaxMS, 1000.0},
		{"chat min", s.Paths["/v1/chat/completions"].MinMS, 1.0},
		{"chat avg", s.Paths["/v1/chat/completions"].AvgMS, (5050.0 + 1000) / 101},
		{"user1 tokens in", s.Keys["user1"].PromptTokens, 1000},
		{"user1 tokens out", s.Keys["user1"].CompletionTokens, 2000},
		{"user2 rejected", s.Keys["user2"].Rejected, 2},
		{"model", s.Models["glm-4.7-flash"], 100},
		{"status 200", s.Statuses["200"], 100},
		{"auth", s.Rejections["auth"], 1},
		{"tpm", s.Rejections["limit:tpm"], 1},
		{"size", s.Rejections["size"], 1},
		{"p50", s.LatencyMS.P50, 51.0},
		{"p95", s.LatencyMS.P95, 96.0},
		{"p99", s.LatencyMS.P99, 100.0},
		{"ttft p50", s.TTFTMS.P50, 5.0},
		{"top client", s.TopClients[0], ClientCount{"10.0.0.1", 34}},
		{"action", s.Actions["key.created"], 1},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if _, err := json.Marshal(s); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := s.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/v1/chat/completions", "limit:tpm", "user1", "TOP CLIENTS", "1 of"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, out.String())
		}
	}

	all, err := ReadStats(files, time.Time{})
	if err != nil || all.Requests != 105 || all.Paths["/v1/models"].Calls != 1 {
		t.Fatalf("without --since: %v %+v", err, all)
	}
}

// TestReadStatsDamagedFile: a .gz cut short (a copy interrupted, a full
// disk) is reported as a damaged file and the records before the damage are
// counted; the other files are read as usual. A missing file is an error.
func TestReadStatsDamagedFile(t *testing.T) {
	dir := t.TempDir()
	var plain bytes.Buffer
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&plain, `{"time":"2026-11-25T10:00:00Z","stage":"completed","request_id":"r%d","key":"k","path":"/v1/models","status":200,"prev":"","hash":""}`+"\n", i)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(plain.Bytes())
	zw.Close()
	cut := filepath.Join(dir, "audit.log.1.gz")
	if err := os.WriteFile(cut, z.Bytes()[:z.Len()/2], 0o600); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(live, plain.Bytes()[:plain.Len()/200], 0o600); err != nil { // one record
		t.Fatal(err)
	}
	s, err := ReadStats([]string{cut, live}, time.Time{})
	if err != nil {
		t.Fatalf("a damaged file must not stop stats: %v", err)
	}
	if len(s.BadFiles) != 1 || !strings.HasPrefix(s.BadFiles[0], "audit stats: "+cut) {
		t.Fatalf("bad files %q, want the cut .gz", s.BadFiles)
	}
	if s.Requests < 2 || s.Requests > 200 {
		t.Fatalf("requests %d: want the live file's record and the readable part of the .gz", s.Requests)
	}
	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil || !strings.Contains(text.String(), "damaged file") {
		t.Fatalf("text report does not name the damaged file (%v):\n%s", err, text.String())
	}
	if _, err := ReadStats([]string{filepath.Join(dir, "missing.log")}, time.Time{}); err == nil {
		t.Fatal("a missing file must be an error")
	}
}

// TestReadStatsPolicy: flagged and rejected requests are counted per rule
// and key, each rule once per request, from completed records only.
func TestReadStatsPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	flag := func(rule string) PolicyHit { return PolicyHit{Rule: rule, Action: PolicyFlag} }
	reject := func(rule string) PolicyHit { return PolicyHit{Rule: rule, Action: PolicyReject} }
	recs := []Record{
		{Stage: StageReceived, RequestID: "1", Key: "alice", Policy: []PolicyHit{flag("watchlist")}},
		{Stage: StageCompleted, RequestID: "1", Key: "alice", Status: 200, Policy: []PolicyHit{flag("watchlist"), flag("watchlist")}},
		{Stage: StageCompleted, RequestID: "2", Key: "alice", Status: 400, Policy: []PolicyHit{flag("watchlist"), reject("no-credentials")}},
		{Stage: StageCompleted, RequestID: "3", Key: "bob", Status: 400, Policy: []PolicyHit{reject("max_tokens")}},
		{Stage: StageCompleted, RequestID: "4", Key: "bob", Status: 200, Policy: []PolicyHit{flag("watchlist")}},
		{Stage: StageCompleted, RequestID: "5", Key: "bob", Status: 200},
	}
	var buf bytes.Buffer
	for i := range recs {
		recs[i].Time = time.Now().UTC()
		b, err := json.Marshal(&recs[i])
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(append(b, '\n'))
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ReadStats([]string{path}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	count := func(f, r int) PolicyCount { return PolicyCount{Flagged: f, Rejected: r} }
	want := map[string]map[string]PolicyCount{
		"watchlist":      {"": count(3, 0), "alice": count(2, 0), "bob": count(1, 0)},
		"no-credentials": {"": count(0, 1), "alice": count(0, 1)},
		"max_tokens":     {"": count(0, 1), "bob": count(0, 1)},
	}
	if len(s.Policy) != len(want) {
		t.Fatalf("policy rules %v, want %d", s.Policy, len(want))
	}
	for rule, keys := range want {
		ps := s.Policy[rule]
		if ps == nil || ps.PolicyCount != keys[""] || len(ps.Keys) != len(keys)-1 {
			t.Fatalf("rule %q: %+v, want %v", rule, ps, keys)
		}
		for k, c := range keys {
			if k != "" && *ps.Keys[k] != c {
				t.Errorf("rule %q key %q: %+v, want %+v", rule, k, *ps.Keys[k], c)
			}
		}
	}
	if s.Flagged != 3 || s.Keys["alice"].Flagged != 2 || s.Keys["bob"].Flagged != 1 || s.Rejected != 2 {
		t.Errorf("flagged %d (alice %d, bob %d), rejected %d", s.Flagged, s.Keys["alice"].Flagged, s.Keys["bob"].Flagged, s.Rejected)
	}
	if s.Rejections["policy:no-credentials"] != 1 || s.Rejections["policy:max_tokens"] != 1 {
		t.Errorf("rejections %v", s.Rejections)
	}
	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"POLICY RULE", "watchlist       (all)  3", "watchlist       alice  2", "no-credentials  alice  0        1"} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("text lacks %q:\n%s", line, text.String())
		}
	}
	if got := FormatRecord(&recs[2]); !strings.Contains(got, "policy=watchlist:flag policy=no-credentials:reject") {
		t.Errorf("FormatRecord = %q", got)
	}
}

// TestStatsCountsCutStreams (issue 15): a completed record with status 200
// and error "incomplete" (a stream the model server cut) is a failure, shown
// apart from 5xx.
func TestStatsCountsCutStreams(t *testing.T) {
	s := newStatsReport(nil, time.Time{})
	for _, r := range []Record{
		{Stage: StageCompleted, RequestID: "a", Key: "k", Path: "/v1/chat/completions", Status: 200},
		{Stage: StageCompleted, RequestID: "b", Key: "k", Path: "/v1/chat/completions", Status: 200, Error: ErrorIncomplete},
		{Stage: StageCompleted, RequestID: "c", Key: "k", Path: "/v1/chat/completions", Status: 502, Error: "upstream_unavailable"},
	} {
		s.add(&r)
	}
	s.finish()
	if s.Errors != 2 || s.Cut != 1 || s.ServerErrors != 1 || s.Keys["k"].Errors != 2 || s.Keys["k"].Cut != 1 {
		t.Fatalf("errors %d (cut %d, 5xx %d), key errors %d cut %d: want 2 (1, 1), 2 1",
			s.Errors, s.Cut, s.ServerErrors, s.Keys["k"].Errors, s.Keys["k"].Cut)
	}
	var out strings.Builder
	if err := s.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 5xx, 1 cut") {
		t.Fatalf("text report:\n%s", out.String())
	}
}
