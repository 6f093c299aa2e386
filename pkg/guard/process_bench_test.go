package guard

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/stub"
	"github.com/hashicorp/go-hclog"
)

// TestHelperLoadProcess is not a test: re-executed by BenchmarkGuardProcess
// with GUARD_HELPER=1, it runs the stand-in upstream and the load generator
// in a process of their own, so the guard's process CPU is the guard's alone.
// Protocol: it prints "ADDR <upstream url>", reads "<guard url> <key> <n>
// <concurrency>" from stdin, sends n requests and prints "DONE <ok>".
func TestHelperLoadProcess(t *testing.T) {
	if os.Getenv("GUARD_HELPER") != "1" {
		t.Skip("helper process for BenchmarkGuardProcess")
	}
	upURL, body := "", benchBody
	if os.Getenv("GUARD_HELPER_STREAMS") == "1" {
		// The stand-in vLLM: 64 tokens 1 ms apart, as in make bench-proxy.
		v := stub.NewVLLM(stub.VLLMOptions{Listen: "127.0.0.1:0", ITL: time.Millisecond, ReplyTokens: 64, Logger: hclog.NewNullLogger()})
		go func() { _ = v.Run(context.Background()) }()
		<-v.Ready()
		upURL, body = "http://"+v.Addr().String(), benchStreamBody
	} else {
		upURL = newStandIn(t, false).url
	}
	fmt.Printf("ADDR %s\n", upURL)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var url, key string
		var n, conc int
		if _, err := fmt.Sscan(in.Text(), &url, &key, &n, &conc); err != nil {
			fmt.Printf("ERR %v\n", err)
			return
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}}
		var next, ok atomic.Int64
		var wg sync.WaitGroup
		for c := 0; c < conc; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+key)
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 && (body == benchBody || bytes.HasSuffix(got, []byte("data: [DONE]\n\n"))) {
						ok.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		client.CloseIdleConnections()
		fmt.Printf("DONE %d\n", ok.Load())
	}
}

// BenchmarkGuardProcess measures the guard's own CPU per proxied request
// (getrusage of this process, which runs only the guard), the figure DESIGN
// compares with nginx's worker CPU per request. Load: 64 concurrent
// connections from a separate process.
func BenchmarkGuardProcess(b *testing.B) {
	b.Run("audit=off", func(b *testing.B) { benchGuardProcess(b, discardAudit{}, 64) })
	b.Run("audit=file", func(b *testing.B) {
		w, _ := openAuditFile(b)
		benchGuardProcess(b, w, 64)
	})
	// One request at a time: the per-request costs no batching hides.
	b.Run("audit=file,serial", func(b *testing.B) {
		w, _ := openAuditFile(b)
		benchGuardProcess(b, w, 1)
	})
	// Issue 14: the request policy with 100 rules (50 literal rules, CJK
	// included, and 50 RE2 patterns) against none, audit off.
	b.Run("policy=100", func(b *testing.B) {
		benchGuardProcess(b, discardAudit{}, 64, func(_ *config.Guard, h *harness) {
			h.policy = &config.Policy{Rules: benchRules()}
		})
	})
}

// benchStreamBody asks for a 64-token stream.
const benchStreamBody = `{"model":"glm-4.7-flash","messages":[{"role":"user","content":"Say hello"}],"max_tokens":64,"stream":true}`

// BenchmarkGuardStreamProcess measures the guard's own CPU per stream (64
// events 1 ms apart, 256 at a time), the figure bench-proxy compares with
// nginx's CPU per stream; profile it with -cpuprofile, which sees only the
// guard.
func BenchmarkGuardStreamProcess(b *testing.B) {
	b.Run("audit=file", func(b *testing.B) {
		w, _ := openAuditFile(b)
		benchGuardProcessLoad(b, w, 256, true)
	})
}

// benchGuardProcess measures the guard's own CPU per request, the load and
// the upstream running in a helper process.
func benchGuardProcess(b *testing.B, auditor Auditor, conc int, opts ...harnessOpt) {
	benchGuardProcessLoad(b, auditor, conc, false, opts...)
}

// benchGuardProcessLoad is benchGuardProcess with streaming chats when
// streams is true.
func benchGuardProcessLoad(b *testing.B, auditor Auditor, conc int, streams bool, opts ...harnessOpt) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLoadProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(), "GUARD_HELPER=1")
	unit, warm := "req", 2000
	if streams {
		cmd.Env = append(cmd.Env, "GUARD_HELPER_STREAMS=1")
		unit, warm = "stream", 2*conc
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	out := bufio.NewScanner(stdout)
	line := func(prefix string) string {
		for out.Scan() {
			if rest, ok := strings.CutPrefix(out.Text(), prefix+" "); ok {
				return rest
			}
		}
		b.Fatalf("helper ended before %s", prefix)
		return ""
	}
	upURL := line("ADDR")
	opts = append(opts, withAuditor(auditor), withLimits(`{"rate_limits": {"default": {"rpm": 1000000000, "tpm": 1000000000, "concurrency": 100000}}}`),
		func(cfg *config.Guard, _ *harness) { cfg.Upstream = upURL })
	h := newHarness(b, opts...)
	// Warm the connection pools, then measure b.N requests.
	fmt.Fprintf(stdin, "%s %s %d %d\n", h.url, keyUser2, warm, conc)
	line("DONE")
	b.ResetTimer()
	cpu0 := cpuTime()
	fmt.Fprintf(stdin, "%s %s %d %d\n", h.url, keyUser2, b.N, conc)
	okN, _ := strconv.Atoi(line("DONE"))
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if okN != b.N {
		b.Fatalf("%d of %d requests succeeded", okN, b.N)
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "guard-cpu-µs/"+unit)
}
