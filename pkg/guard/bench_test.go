package guard

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/glmctl/glmctl/pkg/audit"
)

// discardAudit accepts every record (the audit writer's own cost is measured
// in pkg/audit).
type discardAudit struct{}

func (discardAudit) Write(context.Context, *audit.Record) error { return nil }

const benchBody = `{"model":"glm-4.7-flash","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}`

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}}
}

func runBench(b *testing.B, url, key string) {
	client := benchClient()
	defer client.CloseIdleConnections()
	b.SetParallelism(8) // 8 × GOMAXPROCS concurrent clients
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", url+"/v1/chat/completions", bytes.NewReader([]byte(benchBody)))
			req.Header.Set("Content-Type", "application/json")
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	// Process CPU (client, guard and upstream together) per request, read
	// from getrusage: subtract BenchmarkDirect's figure to get the guard's.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDirect is the stand-in upstream alone, for comparison.
func BenchmarkDirect(b *testing.B) {
	up := newStandIn(b, false)
	runBench(b, up.url, "")
}

// BenchmarkGuard goes through the whole chain over real sockets: id, auth
// (hashed key), limits that never reject, audit (discarding writer), proxy,
// usage accounting.
func BenchmarkGuard(b *testing.B) {
	h := newHarness(b, withAuditor(discardAudit{}), withLimits(`{"rate_limits": {"default": {"rpm": 1000000000, "tpm": 1000000000, "concurrency": 100000}}}`))
	runBench(b, h.url, keyUser2)
}

// benchTTFT measures the time from sending a streaming request to reading
// its first chunk, one request at a time.
func benchTTFT(b *testing.B, url, key string) {
	client := benchClient()
	defer client.CloseIdleConnections()
	body := `{"model":"glm-4.7-flash","stream":true,"messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}`
	var total time.Duration
	buf := make([]byte, 4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("POST", url+"/v1/chat/completions", bytes.NewReader([]byte(body)))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := resp.Body.Read(buf); n == 0 {
			b.Fatal(err)
		}
		total += time.Since(start)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "ttft-µs")
}

// BenchmarkTTFTDirect and BenchmarkTTFTGuard give the first-byte time of a
// stream without and with the guard (the difference is what it adds).
func BenchmarkTTFTDirect(b *testing.B) { benchTTFT(b, newStandIn(b, false).url, "") }

// BenchmarkTTFTGuard: see BenchmarkTTFTDirect.
func BenchmarkTTFTGuard(b *testing.B) {
	h := newHarness(b, withAuditor(discardAudit{}), withLimits(`{"rate_limits": {}}`))
	benchTTFT(b, h.url, keyUser2)
}
