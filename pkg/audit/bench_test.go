package audit

import (
	"context"
	"os"
	"testing"
)

// BenchmarkWriter measures records/s of the writer (hash chain included)
// for each fsync policy, with 64 concurrent writers sharing group commits:
//
//	go test -run '^$' -bench BenchmarkWriter -benchtime 2s ./pkg/audit/
func BenchmarkWriter(b *testing.B) {
	for _, policy := range []string{FsyncAlways, FsyncInterval, FsyncNever} {
		b.Run(policy, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.Fsync = policy
			w := mustOpen(b, cfg, Options{})
			r := rec(1)
			r.Stage, r.Status, r.LatencyMS, r.PromptTokens, r.CompletionTokens = StageCompleted, 200, 812.5, 25, 230
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c := *r
					if err := w.Write(context.Background(), &c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			w.Close()
		})
	}
}

// BenchmarkWriterSerial is one writer waiting for each record in turn: the
// latency a single request sees.
func BenchmarkWriterSerial(b *testing.B) {
	for _, policy := range []string{FsyncAlways, FsyncInterval, FsyncNever} {
		b.Run(policy, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.Fsync = policy
			w := mustOpen(b, cfg, Options{})
			r := rec(1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c := *r
				if err := w.Write(context.Background(), &c); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			w.Close()
		})
	}
}

// BenchmarkVerify measures Verify over a 100 000-record log (MB/s, records/s).
func BenchmarkVerify(b *testing.B) {
	cfg := testConfig(b)
	w := mustOpen(b, cfg, Options{})
	const n = 100000
	r := rec(1)
	r.Stage, r.Status, r.LatencyMS = StageCompleted, 200, 812.5
	for i := 0; i < n; i++ {
		c := *r
		if err := w.Write(context.Background(), &c); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	st, _ := os.Stat(cfg.Path)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Verify([]string{cfg.Path}, VerifyOptions{})
		if err != nil || !rep.Intact() {
			b.Fatal(err, rep.Problems)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
