package audit

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// mountTmpfs mounts a small tmpfs on a temp dir, unmounted at test end. It
// skips the test only when mounting is not permitted here.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("mount -t tmpfs not permitted here (needs root or CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes zeros to name until the filesystem is full.
func fill(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 512)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, os.ErrNotExist) && strings.Contains(err.Error(), "no space") {
				return
			}
			t.Fatalf("fill: %v", err)
		}
	}
}

func TestFullFilesystem(t *testing.T) {
	for _, onError := range []string{OnErrorReject, OnErrorContinue} {
		t.Run(onError, func(t *testing.T) {
			dir := mountTmpfs(t, "64k")
			cfg := testConfig(t)
			cfg.Path = filepath.Join(dir, "audit.log")
			cfg.OnError = onError
			cfg.Fsync = FsyncAlways
			reg := prometheus.NewRegistry()
			log := newTestLogger(t)
			w := mustOpen(t, cfg, Options{Registerer: reg, Logger: log})
			mustWrite(t, w, 0, 10)

			filler := filepath.Join(dir, "filler")
			fill(t, filler)
			var failed int
			for i := 10; i < 40; i++ {
				r := rec(i)
				r.Error = strings.Repeat("x", 300) // bigger than any space left
				err := w.Write(context.Background(), r)
				switch {
				case onError == OnErrorReject && err == nil:
					t.Fatalf("write %d on a full disk: no error", i)
				case onError == OnErrorReject && !errors.Is(err, ErrWrite):
					t.Fatalf("write %d: %v, want ErrWrite", i, err)
				case onError == OnErrorContinue && err != nil:
					t.Fatalf("write %d under continue: %v", i, err)
				}
				failed++
			}
			if w.Err() == nil {
				t.Fatal("Err() is nil while the disk is full")
			}
			if got := metricValue(t, reg, "glmctl_audit_write_errors_total"); int(got) != failed {
				t.Fatalf("glmctl_audit_write_errors_total = %v, want %d", got, failed)
			}
			if !strings.Contains(log.buf.String(), "audit records not written") {
				t.Fatalf("no log line about the failure:\n%s", log.buf.String())
			}

			// Space comes back: the writer recovers by itself.
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, w, 100, 5)
			if w.Err() != nil {
				t.Fatalf("Err() = %v after recovery", w.Err())
			}
			if !strings.Contains(log.buf.String(), "audit log writable again") {
				t.Fatalf("no log line about the recovery:\n%s", log.buf.String())
			}
			w.Close()
			ids := idsIn(t, []string{cfg.Path})
			if len(ids) != 15 {
				t.Fatalf("%d records on disk, want the 15 acknowledged ones: %v", len(ids), ids)
			}
			rep := mustVerify(t, []string{cfg.Path}, VerifyOptions{})
			if !rep.Intact() || len(rep.Warnings) != 0 {
				t.Fatalf("verify after a full disk: %+v", rep)
			}
		})
	}
}

func TestReadOnlyDirectory(t *testing.T) {
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	w := mustOpen(t, cfg, Options{Registerer: reg})
	mustWrite(t, w, 0, 3)
	// A read-only filesystem mounted over the log's directory: the path no
	// longer leads to the open file, and nothing can be created there.
	dir := filepath.Dir(cfg.Path)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount -t tmpfs not permitted here (needs root or CAP_SYS_ADMIN): %v: %s", err, out)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", dir).Run()
		}
	})
	// The writer checks that its path still names its file at most every
	// pathCheckEvery; let that much pass so the next batch checks.
	time.Sleep(2 * pathCheckEvery)
	for i := 3; i < 5; i++ {
		if err := w.Write(context.Background(), rec(i)); !errors.Is(err, ErrWrite) {
			t.Fatalf("write into a read-only directory: %v, want ErrWrite", err)
		}
	}
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	mounted = false
	mustWrite(t, w, 5, 2)
	if got := metricValue(t, reg, "glmctl_audit_write_errors_total"); got != 2 {
		t.Fatalf("write errors %v, want 2", got)
	}
	w.Close()
	if rep := mustVerify(t, []string{cfg.Path}, VerifyOptions{}); !rep.Intact() || rep.Records != 5 || len(rep.Warnings) != 0 {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestOpenFailsOnReadOnlyFilesystem(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v: %s", err, out)
	}
	cfg := testConfig(t)
	cfg.Path = filepath.Join(dir, "audit.log")
	if _, err := Open(cfg, Options{}); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("Open on a read-only filesystem: %v, want EROFS", err)
	}
}
