package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// logrotateBin finds Debian's logrotate or skips.
func logrotateBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"logrotate", "/usr/sbin/logrotate"} {
		if b, err := exec.LookPath(p); err == nil {
			return b
		}
	}
	t.Skip("logrotate is not installed (apt-get install -y logrotate; .ci/run installs it)")
	return ""
}

// tutorialLogrotate is the tutorial's /etc/logrotate.d/vllm-audit with its
// path replaced.
func tutorialLogrotate(t *testing.T, auditPath string) string {
	t.Helper()
	b, err := os.ReadFile("../../../shared/tutorial/vllm-audit.logrotate")
	if err != nil {
		// The exact text, should the shared folder not be beside the repo.
		b = []byte("/var/log/vllm/audit.log {\ndaily\nrotate 30\nmissingok\nnotifempty\ncompress\ndelaycompress\ncopytruncate\n}\n")
	}
	return strings.ReplaceAll(string(b), "/var/log/vllm/audit.log", auditPath)
}

// runLogrotate forces one rotation with conf.
func runLogrotate(t *testing.T, bin, conf string) {
	t.Helper()
	dir := t.TempDir()
	cf := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-f", "-s", filepath.Join(dir, "state"), cf).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v: %s", err, out)
	}
}

// loadWriters writes records from 4 goroutines until stop is closed and
// returns the acknowledged ids.
func loadWriters(t *testing.T, w *Writer, stop <-chan struct{}, count *atomic.Int64) func() []string {
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := rec(0)
				r.RequestID = fmt.Sprintf("lr%d-%d", g, i)
				if err := w.Write(context.Background(), r); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
				count.Add(1)
				mu.Lock()
				ids = append(ids, r.RequestID)
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	return func() []string { wg.Wait(); return ids }
}

func TestLogrotateCreateReopen(t *testing.T) {
	bin := logrotateBin(t)
	cfg := testConfig(t)
	w := mustOpen(t, cfg, Options{})
	mustWrite(t, w, 0, 10)

	// postrotate signals this process like `kill -USR1 $(pidof glmctl)`.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	defer signal.Stop(sig)
	reopened := make(chan error, 1)
	go func() { <-sig; reopened <- w.Reopen() }()

	stop := make(chan struct{})
	var n atomic.Int64
	wait := loadWriters(t, w, stop, &n)
	waitFor(t, 5*time.Second, "load", func() bool { return n.Load() > 200 })
	runLogrotate(t, bin, fmt.Sprintf("%s {\n  create 0600 root root\n  rotate 5\n  missingok\n  postrotate\n    kill -USR1 %d\n  endscript\n}\n", cfg.Path, os.Getpid()))
	select {
	case err := <-reopened:
		if err != nil {
			t.Fatalf("Reopen: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("postrotate's SIGUSR1 never came")
	}
	mark := n.Load()
	waitFor(t, 5*time.Second, "load after rotation", func() bool { return n.Load() > mark+200 })
	close(stop)
	ids := wait()
	w.Close()

	files, _ := Files(cfg.Path)
	if len(files) != 2 || files[0] != cfg.Path+".1" {
		t.Fatalf("files %v, want audit.log.1 then audit.log", files)
	}
	seen := idsIn(t, files)
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("%s found %d times (%d acknowledged)", id, seen[id], len(ids))
		}
	}
	rep := mustVerify(t, files, VerifyOptions{})
	if !rep.Intact() || len(rep.Warnings) != 0 || rep.Records != len(ids)+10 {
		t.Fatalf("verify after create + reopen: records %d of %d, %v %v", rep.Records, len(ids)+10, rep.Problems, rep.Warnings)
	}
	if st, _ := os.Stat(cfg.Path); st.Mode().Perm() != 0o600 {
		t.Fatalf("new file mode %v", st.Mode().Perm())
	}
}

func TestLogrotateCopytruncate(t *testing.T) {
	bin := logrotateBin(t)
	cfg := testConfig(t)
	log := newTestLogger(t)
	w := mustOpen(t, cfg, Options{Logger: log})
	mustWrite(t, w, 0, 10)
	stop := make(chan struct{})
	var n atomic.Int64
	wait := loadWriters(t, w, stop, &n)
	waitFor(t, 5*time.Second, "load", func() bool { return n.Load() > 200 })

	conf := tutorialLogrotate(t, cfg.Path)
	if warns := CheckLogrotate(writeTemp(t, conf), cfg.Path); len(warns) != 1 || !strings.Contains(warns[0], "copytruncate") {
		t.Fatalf("CheckLogrotate on the tutorial's file: %v", warns)
	}
	runLogrotate(t, bin, conf)
	mark := n.Load()
	waitFor(t, 5*time.Second, "load after rotation", func() bool { return n.Load() > mark+200 })
	close(stop)
	wait()
	w.Close()

	b, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		t.Fatal("NUL bytes in the truncated audit log")
	}
	if !bytes.Contains(b, []byte(ActionChainBreak)) {
		t.Fatalf("no %s record after copytruncate", ActionChainBreak)
	}
	if !strings.Contains(log.buf.String(), "audit hash chain broken") {
		t.Fatal("the chain break was not logged")
	}
	files, _ := Files(cfg.Path)
	rep := mustVerify(t, files, VerifyOptions{})
	if !rep.Intact() {
		t.Fatalf("a documented copytruncate break reported as tampering: %v", rep.Problems)
	}
	var breaks int
	for _, f := range rep.Warnings {
		switch f.Kind {
		case KindBreak:
			breaks++
		case KindTorn: // logrotate may copy a line mid-write
		default:
			t.Fatalf("unexpected warning %v", f)
		}
	}
	if breaks != 1 {
		t.Fatalf("%d break warnings, want 1: %v", breaks, rep.Warnings)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "conf")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckLogrotate(t *testing.T) {
	const audit = "/var/log/glmctl/audit.log"
	tests := []struct {
		name, conf string
		warns      int
	}{
		{"copytruncate", "/var/log/glmctl/audit.log {\n copytruncate\n}\n", 1},
		{"glob", "/var/log/glmctl/*.log {\n daily\n copytruncate\n}\n", 1},
		{"global default", "copytruncate\n/var/log/glmctl/audit.log {\n daily\n}\n", 1},
		{"overridden", "copytruncate\n/var/log/glmctl/audit.log {\n nocopytruncate\n}\n", 0},
		{"other file", "/var/log/nginx/*.log {\n copytruncate\n}\n", 0},
		{"create reopen", "/var/log/glmctl/audit.log {\n create 0600 root root\n postrotate\n  glmctl audit reopen # copytruncate\n endscript\n}\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckLogrotate(writeTemp(t, tt.conf), audit); len(got) != tt.warns {
				t.Fatalf("got %v, want %d warnings", got, tt.warns)
			}
		})
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "glmctl"), []byte(tests[0].conf), 0o644)
	os.WriteFile(filepath.Join(dir, "nginx"), []byte(tests[4].conf), 0o644)
	if got := CheckLogrotate(dir, audit); len(got) != 1 || !strings.Contains(got[0], "glmctl:2:") {
		t.Fatalf("directory: %v", got)
	}
	if got := CheckLogrotate(filepath.Join(dir, "absent"), audit); got != nil {
		t.Fatalf("missing file: %v", got)
	}
}
