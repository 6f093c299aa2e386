package launcher

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
)

func TestLogRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs", "p")
	path := filepath.Join(dir, "p.log")
	p := prog("p", selfCmd("spew", "200", "100"))
	p.Log = config.ProgramLog{Path: path, MaxSize: 4096, Keep: 2}
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	waitFor(t, 10*time.Second, "all lines", func() bool {
		l, _ := h.s.Tail("p", 1)
		return len(l) == 1 && l[0] == "done"
	})
	h.shutdown()
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("log dir: %v, mode %v", err, st.Mode())
	}
	for _, name := range []string{"p.log", "p.log.1", "p.log.2"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 4096 || st.Size() < 3000 && name != "p.log" {
			t.Errorf("%s: %d bytes, max_size 4096", name, st.Size())
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("p.log.3 exists with keep = 2")
	}
	b, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(b), "00199 "+strings.Repeat("x", 100)+"\ndone\n") {
		t.Errorf("p.log ends with %q", b[max(0, len(b)-40):])
	}
	b1, _ := os.ReadFile(path + ".1")
	if !strings.HasPrefix(string(b1), "00") || strings.Count(string(b1), "\n") != len(b1)/107 {
		t.Errorf("p.log.1 holds partial lines: %q…", b1[:40])
	}
}

func TestRotatingFileAppendsAcrossOpens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	for i := range 2 {
		f, err := openRotating(path, 0, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.writeLine([]byte(fmt.Sprint("line ", i))); err != nil {
			t.Fatal(err)
		}
		f.close()
	}
	if b, _ := os.ReadFile(path); string(b) != "line 0\nline 1\n" {
		t.Errorf("file = %q", b)
	}
}

func TestReopenLogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	p := prog("p", selfCmd("sleep"))
	p.Log = config.ProgramLog{Path: path, MaxSize: 1 << 20, Keep: 1}
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	h.waitState("p", StateRunning, 10*time.Second)
	waitFor(t, 20*time.Second, "the first run's line", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), "\n") == 1
	})
	if err := os.Rename(path, path+".old"); err != nil { // logrotate "create"
		t.Fatal(err)
	}
	if err := h.s.ReopenLogs(); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Restart(ctxT(t, 10*time.Second), "p"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a line in the new file", func() bool {
		b, _ := os.ReadFile(path)
		return strings.HasPrefix(string(b), "sleeping ")
	})
	if b, _ := os.ReadFile(path + ".old"); strings.Count(string(b), "\n") != 1 {
		t.Errorf("old file = %q, want the first run's line only", b)
	}
}

func TestLongLinesAreSplitNotLost(t *testing.T) {
	o := newOutput(hclog.NewNullLogger())
	long := strings.Repeat("a", 40000)
	o.read(strings.NewReader("short\n"+long+"\nlast without newline"), "stdout")
	got := o.tail(0)
	if len(got) != 5 || got[0] != "short" || got[4] != "last without newline" {
		t.Fatalf("lines = %d: %q…", len(got), got[0])
	}
	if joined := got[1] + got[2] + got[3]; joined != long || len(got[1]) != maxLine {
		t.Errorf("long line split into %d+%d+%d bytes", len(got[1]), len(got[2]), len(got[3]))
	}
}

func TestTailIsBounded(t *testing.T) {
	o := newOutput(hclog.NewNullLogger())
	var sb strings.Builder
	for i := range tailLines + 10 {
		fmt.Fprintf(&sb, "%d\n", i)
	}
	o.read(strings.NewReader(sb.String()), "stdout")
	all := o.tail(0)
	if len(all) != tailLines || all[0] != "10" || all[len(all)-1] != fmt.Sprint(tailLines+9) {
		t.Errorf("tail kept %d lines from %q to %q", len(all), all[0], all[len(all)-1])
	}
	if l := o.tail(2); len(l) != 2 || l[1] != fmt.Sprint(tailLines+9) {
		t.Errorf("tail(2) = %q", l)
	}
}

func TestGuessLevel(t *testing.T) {
	for line, want := range map[string]hclog.Level{
		"INFO 11-25 10:00:00 [api_server.py:1] Starting": hclog.Info,
		"WARNING 11-25 10:00:00 something":               hclog.Warn,
		"ERROR 11-25 10:00:00 engine died":               hclog.Error,
		"Traceback (most recent call last):":             hclog.Error,
		"DEBUG stuff":                                    hclog.Debug,
		"plain line":                                     hclog.Info,
	} {
		if got := guessLevel(line); got != want {
			t.Errorf("guessLevel(%q) = %v, want %v", line, got, want)
		}
	}
}
