package audit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// tamperTrail writes 10 records, closes the writer and returns the log path
// and its lines.
func tamperTrail(t *testing.T, opts Options) (string, []string) {
	t.Helper()
	cfg := testConfig(t)
	w := mustOpen(t, cfg, opts)
	mustWrite(t, w, 1, 10)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg.Path, readLines(t, cfg.Path)
}

func TestVerifyIntact(t *testing.T) {
	path, lines := tamperTrail(t, Options{})
	if len(lines) != 10 {
		t.Fatalf("got %d lines, want 10", len(lines))
	}
	rep := mustVerify(t, []string{path}, VerifyOptions{})
	if !rep.Intact() || len(rep.Warnings) != 0 || rep.Records != 10 {
		t.Fatalf("intact trail: got %+v", rep)
	}
	// The first record starts the chain; every next one links to it.
	var prev string
	for i, l := range lines {
		var r Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Prev != prev {
			t.Fatalf("line %d: prev %q, want %q", i+1, r.Prev, prev)
		}
		prev = r.Hash
	}
}

func TestVerifyTamper(t *testing.T) {
	path, lines := tamperTrail(t, Options{})
	dir := filepath.Dir(path)
	forged := func() string {
		// An attacker recomputes a valid hash for a record chained to line 5.
		var r5 Record
		json.Unmarshal([]byte(lines[4]), &r5)
		body, _ := encodeBody(&Record{Stage: StageReceived, RequestID: "forged", Key: "admin"})
		b, _ := hasher{}.appendLine(nil, body, r5.Hash)
		return strings.TrimSuffix(string(b), "\n")
	}
	tests := []struct {
		name     string
		edit     func([]string) []string
		kind     string
		line     int
		warnings bool
	}{
		{"edited field", func(l []string) []string {
			l[4] = strings.Replace(l[4], `"key":"user1"`, `"key":"user2"`, 1)
			return l
		}, KindEdited, 5, false},
		{"edited hash", func(l []string) []string {
			l[2] = l[2][:len(l[2])-4] + `00"}`
			return l
		}, KindEdited, 3, false},
		{"deleted", func(l []string) []string { return append(l[:4:4], l[5:]...) }, KindMissing, 5, false},
		{"inserted duplicate", func(l []string) []string {
			return append(l[:5:5], append([]string{l[2]}, l[5:]...)...)
		}, KindInserted, 6, false},
		{"inserted forged", func(l []string) []string {
			return append(l[:5:5], append([]string{forged()}, l[5:]...)...)
		}, KindInserted, 7, false},
		{"reordered", func(l []string) []string {
			l[3], l[4] = l[4], l[3]
			return l
		}, KindMissing, 4, false},
		{"not json", func(l []string) []string { l[6] = "garbage"; return l }, KindCorrupt, 7, false},
		{"tail cut", func(l []string) []string { return l[:7] }, KindTruncated, 7, false},
		{"all cut", func(l []string) []string { return nil }, KindTruncated, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := copyDir(t, dir)
			p := filepath.Join(d, "audit.log")
			writeLines(t, p, tt.edit(append([]string(nil), lines...)))
			rep := mustVerify(t, []string{p}, VerifyOptions{})
			if rep.Intact() {
				t.Fatalf("tampering not found: %+v", rep)
			}
			got := rep.Problems[0]
			if got.Kind != tt.kind || got.Line != tt.line || got.File != p {
				t.Fatalf("first problem %v; want %s at line %d", got, tt.kind, tt.line)
			}
		})
	}
}

func TestVerifyTruncatedAndRewritten(t *testing.T) {
	// An attacker cuts the tail and re-appends records with valid hashes:
	// only the .head side file can tell.
	path, lines := tamperTrail(t, Options{})
	d := copyDir(t, filepath.Dir(path))
	p := filepath.Join(d, "audit.log")
	l := lines[:6]
	var r Record
	json.Unmarshal([]byte(l[5]), &r)
	prev := r.Hash
	for i := 0; i < 4; i++ {
		body, _ := encodeBody(rec(100 + i))
		var b []byte
		b, prev = hasher{}.appendLine(nil, body, prev)
		l = append(l, strings.TrimSuffix(string(b), "\n"))
	}
	writeLines(t, p, l)
	rep := mustVerify(t, []string{p}, VerifyOptions{})
	if rep.Intact() || rep.Problems[0].Kind != KindTruncated {
		t.Fatalf("got %+v, want a truncated problem", rep)
	}
}

func TestVerifyTornTail(t *testing.T) {
	path, lines := tamperTrail(t, Options{})
	d := copyDir(t, filepath.Dir(path))
	p := filepath.Join(d, "audit.log")
	content := strings.Join(lines, "\n") + "\n" + lines[9][:40] // a crash mid-write
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, []string{p}, VerifyOptions{})
	if !rep.Intact() {
		t.Fatalf("torn tail reported as tampering: %+v", rep.Problems)
	}
	if len(rep.Warnings) != 1 || rep.Warnings[0].Kind != KindTorn || rep.Warnings[0].Line != 11 {
		t.Fatalf("warnings %+v, want one torn at line 11", rep.Warnings)
	}

	// Opening the log again cuts the torn tail, records it, and the chain
	// goes on intact.
	cfg := testConfig(t)
	cfg.Path = p
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 50, 2)
	w.Close()
	rep = mustVerify(t, []string{p}, VerifyOptions{})
	if !rep.Intact() || rep.Records != 13 {
		t.Fatalf("after reopen: %+v", rep)
	}
	if len(rep.Warnings) != 1 || rep.Warnings[0].Kind != KindNote {
		t.Fatalf("warnings %+v, want the writer's note", rep.Warnings)
	}
}

func TestVerifyHMAC(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	path, lines := tamperTrail(t, Options{HMACKey: key})
	for _, l := range lines {
		var r Record
		json.Unmarshal([]byte(l), &r)
		if !strings.HasPrefix(r.Hash, hmacPrefix) || !strings.HasPrefix(r.Client, hmacPrefix) || !strings.HasPrefix(r.UserAgent, hmacPrefix) {
			t.Fatalf("keyed record %s", l)
		}
		if r.Key != "user1" || strings.Contains(l, "10.0.0.7") {
			t.Fatalf("key name must stay clear and the client must not: %s", l)
		}
	}
	if rep := mustVerify(t, []string{path}, VerifyOptions{HMACKey: key}); !rep.Intact() || len(rep.Warnings) != 0 {
		t.Fatalf("with key: %+v", rep)
	}
	rep := mustVerify(t, []string{path}, VerifyOptions{})
	if !rep.Intact() || len(rep.Warnings) != 1 || rep.Warnings[0].Kind != KindUnkeyed {
		t.Fatalf("without key: %+v", rep)
	}
	if rep := mustVerify(t, []string{path}, VerifyOptions{HMACKey: []byte("wrong")}); rep.Intact() || rep.Problems[0].Kind != KindEdited {
		t.Fatalf("wrong key: %+v", rep)
	}
}

func TestVerifyAcrossReopenedWriters(t *testing.T) {
	cfg := testConfig(t)
	for i := 0; i < 3; i++ {
		w := mustOpen(t, cfg, Options{})
		mustWrite(t, w, i*10, 10)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rep := mustVerify(t, []string{cfg.Path}, VerifyOptions{})
	if !rep.Intact() || rep.Records != 30 || len(rep.Warnings) != 0 {
		t.Fatalf("got %+v", rep)
	}
}

func TestVerifyWhileWriting(t *testing.T) {
	for _, fsync := range []string{FsyncAlways, FsyncInterval} {
		t.Run(fsync, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Fsync = fsync
			w := mustOpen(t, cfg, Options{})
			mustWrite(t, w, 0, 1)
			stop := make(chan struct{})
			var n atomic.Int64
			wait := loadWriters(t, w, stop, &n)
			for i := 0; i < 20; i++ {
				rep := mustVerify(t, []string{cfg.Path}, VerifyOptions{})
				if !rep.Intact() {
					t.Fatalf("verify of a live log: %v", rep.Problems)
				}
				for _, f := range rep.Warnings {
					if f.Kind != KindTorn {
						t.Fatalf("verify of a live log: warning %v", f)
					}
				}
			}
			close(stop)
			wait()
		})
	}
}

func TestReadHMACKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "key")
	os.WriteFile(good, []byte("c2VjcmV0LWtleS1mb3ItdGhlLWF1ZGl0LWNoYWlu\n"), 0o600)
	key, err := ReadHMACKey(good)
	if err != nil || string(key) != "c2VjcmV0LWtleS1mb3ItdGhlLWF1ZGl0LWNoYWlu" {
		t.Fatalf("got %q, %v", key, err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, err := ReadHMACKey(short); err == nil {
		t.Fatal("a 3-byte key was accepted")
	}
	if _, err := ReadHMACKey(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key file: %v", err)
	}
}
