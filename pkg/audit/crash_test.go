package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// helperEnv makes the test binary act as an audit writer process.
const helperEnv = "GLMCTL_AUDIT_WRITER_HELPER"

// TestHelperWriterProcess is not a test: re-executed with helperEnv set to
// "path|fsync", it writes records from 8 goroutines until killed and prints
// each acknowledged request id on its own line.
func TestHelperWriterProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process for TestKill9Durability")
	}
	path, fsync, _ := strings.Cut(spec, "|")
	w, err := Open(&config.Audit{Path: path, Fsync: fsync, OnError: OnErrorReject, Level: LevelMetadata,
		Rotate: config.Rotate{MaxSize: 256 << 10, Compress: true}}, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := os.Stdout
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; ; i++ {
				r := rec(0)
				r.RequestID = fmt.Sprintf("g%d-%d", g, i)
				if err := w.Write(context.Background(), r); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				out.WriteString(r.RequestID + "\n") // unbuffered: one write(2) per ack
				mu.Unlock()
			}
		}()
	}
	select {}
}

func TestKill9Durability(t *testing.T) {
	for _, fsync := range []string{FsyncInterval, FsyncAlways} {
		t.Run(fsync, func(t *testing.T) {
			cfg := testConfig(t)
			os.MkdirAll(strings.TrimSuffix(cfg.Path, "/audit.log"), 0o700)
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriterProcess$")
			cmd.Env = append(os.Environ(), helperEnv+"="+cfg.Path+"|"+fsync)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

			const want = 3000
			sc := bufio.NewScanner(stdout)
			var acked []string
			deadline := time.Now().Add(20 * time.Second)
			for len(acked) < want && sc.Scan() {
				acked = append(acked, sc.Text())
				if time.Now().After(deadline) {
					t.Fatalf("only %d acks in 20s; stderr: %s", len(acked), stderr.String())
				}
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for sc.Scan() { // acks written before the kill
				acked = append(acked, sc.Text())
			}
			cmd.Wait()
			if len(acked) < want {
				t.Fatalf("helper died early after %d acks: %s", len(acked), stderr.String())
			}

			files, err := Files(cfg.Path)
			if err != nil {
				t.Fatal(err)
			}
			ids := idsIn(t, files)
			for _, id := range acked {
				if ids[id] != 1 {
					t.Fatalf("acknowledged record %s found %d times on disk (%d acks, %d files)", id, ids[id], len(acked), len(files))
				}
			}
			rep := mustVerify(t, files, VerifyOptions{})
			if !rep.Intact() {
				t.Fatalf("verify after kill -9: %v", rep.Problems)
			}
			for _, w := range rep.Warnings {
				if w.Kind != KindTorn {
					t.Fatalf("unexpected warning %v", w)
				}
			}
			t.Logf("%d acknowledged records, %d on disk in %d files, %d warnings", len(acked), len(ids), len(files), len(rep.Warnings))

			// A restart cuts a torn tail, continues the chain, and the
			// whole trail verifies.
			cfg.Fsync, cfg.Rotate.MaxSize = fsync, 256<<10
			w := mustOpen(t, cfg, Options{})
			mustWrite(t, w, 0, 10)
			w.Close()
			files, _ = Files(cfg.Path)
			rep = mustVerify(t, files, VerifyOptions{})
			if !rep.Intact() {
				t.Fatalf("verify after restart: %v", rep.Problems)
			}
			for _, w := range rep.Warnings {
				if w.Kind != KindTorn && w.Kind != KindNote {
					t.Fatalf("unexpected warning after restart %v", w)
				}
			}
		})
	}
}
