package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// idsIn returns how often each request id occurs in files.
func idsIn(t *testing.T, files []string) map[string]int {
	t.Helper()
	ids := make(map[string]int)
	for _, f := range files {
		rc, err := openLog(f)
		if err != nil {
			t.Fatal(err)
		}
		lr := newLineReader(rc)
		for {
			line, err := lr.next()
			if err != nil {
				break
			}
			var r Record
			if json.Unmarshal(line, &r) == nil && r.RequestID != "" {
				ids[r.RequestID]++
			}
		}
		rc.Close()
	}
	return ids
}

func TestWriterConcurrent(t *testing.T) {
	for _, policy := range []string{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(policy, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Fsync = policy
			reg := prometheus.NewRegistry()
			w := mustOpen(t, cfg, Options{Registerer: reg})
			const workers, each = 8, 200
			var wg sync.WaitGroup
			recs := make([]*Record, workers*each)
			for i := range recs {
				recs[i] = rec(i)
			}
			for g := 0; g < workers; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						r := recs[g*each+i]
						if err := w.Write(context.Background(), r); err != nil {
							t.Errorf("Write: %v", err)
							return
						}
						if r.Hash == "" || r.Time.IsZero() {
							t.Errorf("Write did not fill hash and time: %+v", r)
							return
						}
					}
				}()
			}
			wg.Wait()
			if got := metricValue(t, reg, "glmctl_audit_records_total"); got != workers*each {
				t.Fatalf("glmctl_audit_records_total = %v", got)
			}
			if ts := metricValue(t, reg, "glmctl_audit_last_write_timestamp_seconds"); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
				t.Fatalf("last write timestamp %v", ts)
			}
			if e := metricValue(t, reg, "glmctl_audit_write_errors_total"); e != 0 {
				t.Fatalf("write errors %v", e)
			}
			bytesTotal := metricValue(t, reg, "glmctl_audit_bytes_total")
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			ids := idsIn(t, []string{cfg.Path})
			for _, r := range recs {
				if ids[r.RequestID] != 1 {
					t.Fatalf("%s written %d times", r.RequestID, ids[r.RequestID])
				}
			}
			rep := mustVerify(t, []string{cfg.Path}, VerifyOptions{})
			if !rep.Intact() || rep.Records != workers*each || len(rep.Warnings) != 0 {
				t.Fatalf("verify: %+v", rep)
			}
			st, _ := os.Stat(cfg.Path)
			if int64(bytesTotal) != st.Size() {
				t.Fatalf("glmctl_audit_bytes_total = %v, file has %d", bytesTotal, st.Size())
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, want 0600", st.Mode().Perm())
			}
			dst, _ := os.Stat(filepath.Dir(cfg.Path))
			if dst.Mode().Perm() != 0o700 {
				t.Fatalf("dir mode %v, want 0700", dst.Mode().Perm())
			}
			hd, err := readHead(cfg.Path)
			if err != nil || hd == nil || hd.Hash != recsLastHash(t, cfg.Path) || hd.Offset != st.Size() {
				t.Fatalf("head %+v (err %v) does not name the last record", hd, err)
			}
			if mfs, _ := reg.Gather(); len(mfs) != 0 {
				t.Fatalf("%d metrics still registered after Close", len(mfs))
			}
			// A new writer (a reload) registers on the same registry.
			mustOpen(t, cfg, Options{Registerer: reg}).Close()
		})
	}
}

// recsLastHash returns the hash of the last line of a log.
func recsLastHash(t *testing.T, path string) string {
	lines := readLines(t, path)
	var r Record
	json.Unmarshal([]byte(lines[len(lines)-1]), &r)
	return r.Hash
}

func TestWriterLevels(t *testing.T) {
	for _, tt := range []struct{ level, req, resp string }{
		{LevelMetadata, "", ""},
		{LevelRequest, "REQ", ""},
		{LevelRequestResponse, "REQ", "RESP"},
	} {
		t.Run(tt.level, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Level = tt.level
			w := mustOpen(t, cfg, Options{})
			r := rec(1)
			r.RequestBody, r.ResponseBody = "REQ", "RESP"
			if err := w.Write(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			w.Close()
			var got Record
			json.Unmarshal([]byte(readLines(t, cfg.Path)[0]), &got)
			if got.RequestBody != tt.req || got.ResponseBody != tt.resp {
				t.Fatalf("bodies %q %q, want %q %q", got.RequestBody, got.ResponseBody, tt.req, tt.resp)
			}
		})
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.Fsync, cfg.Level, cfg.OnError = "sometimes", "all", "ignore"
	_, err := Open(cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "fsync") || !strings.Contains(err.Error(), "level") || !strings.Contains(err.Error(), "on_error") {
		t.Fatalf("got %v, want all three problems", err)
	}
}

func TestWriteAfterClose(t *testing.T) {
	w := mustOpen(t, testConfig(t), Options{})
	w.Close()
	if err := w.Write(context.Background(), rec(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestReopenKeepsChain(t *testing.T) {
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 5)
	// What logrotate's create does: rename, then a new file appears.
	old := cfg.Path + ".1"
	if err := os.Rename(cfg.Path, old); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, 5, 5)
	w.Close()
	if n := len(readLines(t, old)); n != 5 {
		t.Fatalf("old file has %d lines, want 5", n)
	}
	rep := mustVerify(t, []string{cfg.Path, old}, VerifyOptions{})
	if !rep.Intact() || rep.Records != 10 || len(rep.Warnings) != 0 || rep.Files[0] != old {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestWriterFollowsRemovedDirectory(t *testing.T) {
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 3)
	if err := os.RemoveAll(filepath.Dir(cfg.Path)); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, 3, 3)
	w.Close()
	ids := idsIn(t, []string{cfg.Path})
	for i := 3; i < 6; i++ {
		if ids[fmt.Sprintf("req-%06d", i)] != 1 {
			t.Fatalf("record %d not in the recreated file: %v", i, ids)
		}
	}
	rep := mustVerify(t, []string{cfg.Path}, VerifyOptions{})
	if !rep.Intact() || len(rep.Warnings) != 1 || rep.Warnings[0].Kind != KindStart {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestWriteContextCancelled(t *testing.T) {
	w := mustOpen(t, testConfig(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either it was queued and written, or the context error comes back.
	if err := w.Write(ctx, rec(1)); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestOpenContinuesFromHeadWhenLogEmpty(t *testing.T) {
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 3)
	w.Close()
	last := recsLastHash(t, cfg.Path)
	if err := os.Rename(cfg.Path, cfg.Path+".1"); err != nil {
		t.Fatal(err)
	}
	w = mustOpen(t, cfg, Options{})
	r := rec(9)
	if err := w.Write(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if r.Prev != last {
		t.Fatalf("prev %q, want the head's %q", r.Prev, last)
	}
	w.Close()
}

// metricValue returns the value of a single-series counter or gauge.
func metricValue(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestOpenAfterCrashFollowingReopen(t *testing.T) {
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 3)
	os.Rename(cfg.Path, cfg.Path+".1")
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	atReopen, err := os.ReadFile(cfg.Path + headSuffix)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, 3, 3)
	w.Close()
	// As if killed before the head was written again.
	os.WriteFile(cfg.Path+headSuffix, atReopen, 0o600)
	w = mustOpen(t, cfg, Options{})
	mustWrite(t, w, 6, 1)
	w.Close()
	files, _ := Files(cfg.Path)
	if rep := mustVerify(t, files, VerifyOptions{}); !rep.Intact() || len(rep.Warnings) != 0 || rep.Records != 7 {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestOpenFindsCutTail(t *testing.T) {
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 10)
	w.Close()
	writeLines(t, cfg.Path, readLines(t, cfg.Path)[:7]) // cut while glmctl was down
	w = mustOpen(t, cfg, Options{})
	mustWrite(t, w, 10, 1)
	w.Close()
	// The head now names the new record, but the writer's note keeps the evidence.
	rep := mustVerify(t, []string{cfg.Path}, VerifyOptions{})
	if rep.Intact() || rep.Problems[0].Kind != KindTruncated || rep.Problems[0].Line != 8 {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestOpenAfterForeignLine(t *testing.T) {
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 3)
	w.Close()
	f, _ := os.OpenFile(cfg.Path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("some other program wrote this\n")
	f.Close()
	w = mustOpen(t, cfg, Options{})
	mustWrite(t, w, 3, 2)
	w.Close()
	rep := mustVerify(t, []string{cfg.Path}, VerifyOptions{})
	if rep.Intact() || rep.Problems[0].Kind != KindCorrupt || rep.Problems[0].Line != 4 || len(rep.Problems) != 1 {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestSubmitLosesNothing: submitted records, which do not wake the writer,
// are written with the next batch or at Close — every one, chained — and a
// Submit after Close says so.
func TestSubmitLosesNothing(t *testing.T) {
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	for i := range 50 {
		if err := w.Submit(rec(i)); err != nil {
			t.Fatal(err)
		}
		if i == 20 { // a waited-for record takes the submitted ones with it
			if err := w.Write(context.Background(), rec(1000)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Submit(rec(99)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
	rep, err := VerifyFile(cfg.Path, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 51 || !rep.Intact() {
		t.Fatalf("verify: %d records, intact %v: want 51 intact", rep.Records, rep.Intact())
	}
}
