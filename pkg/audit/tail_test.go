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

func TestTail(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rotate.MaxSize = 4 << 10
	w := mustOpen(t, cfg, Options{})
	for i := 0; i < 60; i++ {
		r := rec(i)
		if i%3 == 0 {
			r.Key, r.Status = "user2", 429
		}
		if err := w.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	files, _ := Files(cfg.Path)
	got, err := Tail(files, 15, Filter{Key: "user2", Status: 429})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 15 || got[0].RequestID != "req-000015" || got[14].RequestID != "req-000057" {
		t.Fatalf("tail: %d records, first %s, last %s", len(got), got[0].RequestID, got[len(got)-1].RequestID)
	}
	line := FormatRecord(&got[0])
	for _, want := range []string{"received", "req-000015", "user2", "POST", "/v1/chat/completions", "429"} {
		if !strings.Contains(line, want) {
			t.Fatalf("FormatRecord %q lacks %q", line, want)
		}
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, cfg.Path, Filter{}, func(r *Record) {
			mu.Lock()
			seen[r.RequestID]++
			mu.Unlock()
		})
	}()
	count := func(prefix string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for id, c := range seen {
			if strings.HasPrefix(id, prefix) {
				n += c
			}
		}
		return n
	}
	// Probe until Follow is watching.
	waitFor(t, 5*time.Second, "follow to start", func() bool {
		r := rec(0)
		r.RequestID = "probe"
		w.Write(context.Background(), r)
		return count("probe") > 0
	})
	write := func(round int) {
		for i := 0; i < 20; i++ {
			r := rec(i)
			r.RequestID = fmt.Sprintf("round%d-%d", round, i)
			if err := w.Write(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := 0; round < 3; round++ {
		write(round)
		if err := os.Rename(cfg.Path, fmt.Sprintf("%s.%d", cfg.Path, round)); err != nil {
			t.Fatal(err)
		}
		if err := w.Reopen(); err != nil {
			t.Fatal(err)
		}
		write(round + 10)
		waitFor(t, 5*time.Second, "records of both files", func() bool { return count("round") == 40*(round+1) })
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for id, c := range seen {
		if c != 1 && id != "probe" {
			t.Fatalf("%s seen %d times", id, c)
		}
	}
}
