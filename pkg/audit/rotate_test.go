package audit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeConcurrently writes workers*each records from workers goroutines and
// returns their ids.
func writeConcurrently(t *testing.T, w *Writer, workers, each int) []string {
	t.Helper()
	var wg sync.WaitGroup
	ids := make([]string, workers*each)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := rec(0)
				r.RequestID = fmt.Sprintf("w%d-%d", g, i)
				ids[g*each+i] = r.RequestID
				if err := w.Write(context.Background(), r); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return ids
}

func TestRotationUnderLoad(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rotate.MaxSize = 32 << 10
	cfg.Rotate.Compress = true
	w := mustOpen(t, cfg, Options{})
	ids := writeConcurrently(t, w, 8, 250)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	var gz int
	for _, f := range files {
		if strings.HasSuffix(f, ".gz") {
			gz++
		}
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v (%v), want 0600", f, st.Mode().Perm(), err)
		}
		if !strings.HasSuffix(f, ".gz") {
			if st, _ := os.Stat(f); st.Size() > cfg.Rotate.MaxSize {
				t.Fatalf("%s is %d bytes, over max_size %d", f, st.Size(), cfg.Rotate.MaxSize)
			}
		}
	}
	if len(files) < 10 || gz == 0 {
		t.Fatalf("%d files, %d compressed: rotation did not happen as expected: %v", len(files), gz, files)
	}
	seen := idsIn(t, files)
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("%s found %d times across %d files", id, seen[id], len(files))
		}
	}
	rep := mustVerify(t, files, VerifyOptions{})
	if !rep.Intact() || rep.Records != len(ids) || len(rep.Warnings) != 0 {
		t.Fatalf("verify across rotated files: records %d, problems %v, warnings %v", rep.Records, rep.Problems, rep.Warnings)
	}
	// Shell glob order (audit.log first) gives the same result.
	if rep := mustVerify(t, append([]string{cfg.Path}, files[:len(files)-1]...), VerifyOptions{}); !rep.Intact() {
		t.Fatalf("verify in glob order: %v", rep.Problems)
	}
	// A file removed from the middle is found.
	if err := os.Remove(files[3]); err != nil {
		t.Fatal(err)
	}
	rep = mustVerify(t, append(files[:3:3], files[4:]...), VerifyOptions{})
	if rep.Intact() || rep.Problems[0].Kind != KindMissing || rep.Problems[0].File != files[4] || rep.Problems[0].Line != 1 {
		t.Fatalf("deleted middle file: %+v", rep.Problems)
	}
}

func TestRotationKeep(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rotate.MaxSize = 4 << 10
	cfg.Rotate.Keep = 3
	cfg.Rotate.Compress = true
	w := mustOpen(t, cfg, Options{})
	for i := 0; i < 200; i++ {
		mustWrite(t, w, i, 1)
	}
	waitFor(t, 5*time.Second, "pruning to 3 rotated files", func() bool {
		stems, gz, _ := rotatedFiles(cfg.Path)
		return len(stems) == 3 && len(gz) == 3
	})
	w.Close()
	files, _ := Files(cfg.Path)
	rep := mustVerify(t, files, VerifyOptions{})
	if !rep.Intact() || len(rep.Warnings) != 1 || rep.Warnings[0].Kind != KindStart {
		t.Fatalf("verify after pruning: %+v", rep)
	}
}

func TestRotationDaily(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rotate.Daily = true
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 3)
	w.Close()
	// The file was last written yesterday: the next writer rotates it first.
	yesterday := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(cfg.Path, yesterday, yesterday); err != nil {
		t.Fatal(err)
	}
	w = mustOpen(t, cfg, Options{})
	mustWrite(t, w, 3, 3)
	mustWrite(t, w, 6, 1) // same day: no second rotation
	w.Close()
	files, _ := Files(cfg.Path)
	if len(files) != 2 || len(readLines(t, cfg.Path)) != 4 {
		t.Fatalf("files %v, want the old day's and today's", files)
	}
	if rep := mustVerify(t, files, VerifyOptions{}); !rep.Intact() || rep.Records != 7 {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestCrashDuringRotation(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rotate.MaxSize = 4 << 10
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 40)
	w.Close()
	stems, _, _ := rotatedFiles(cfg.Path)
	if len(stems) < 2 {
		t.Fatalf("want rotated files, got %v", stems)
	}
	// The state a kill leaves between rotate's rename and its head update:
	// the live file renamed, a new empty one, the head from the rotation
	// before.
	stale := head{File: "audit.log", Offset: 0, Hash: lastHash(stems[len(stems)-1])}
	if err := os.Rename(cfg.Path, cfg.Path+"."+time.Now().UTC().Format(rotateLayout)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfg.Path, nil, 0o600)
	if err := writeHead(cfg.Path, stale, false); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(cfg.Path)
	if rep := mustVerify(t, files, VerifyOptions{}); !rep.Intact() || len(rep.Warnings) != 0 {
		t.Fatalf("verify after a crash during rotation: %+v", rep)
	}
	w = mustOpen(t, cfg, Options{})
	mustWrite(t, w, 40, 2)
	w.Close()
	files, _ = Files(cfg.Path)
	if rep := mustVerify(t, files, VerifyOptions{}); !rep.Intact() || len(rep.Warnings) != 0 || rep.Records != 42 {
		t.Fatalf("verify after restart: %+v", rep)
	}
}
