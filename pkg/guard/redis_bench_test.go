package guard

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkStoreAdmit: decisions per second of each store, every limit in
// play (key rpm, tpm, concurrency, global rpm and concurrency) and none
// refusing, over 64 keys, from 8 × GOMAXPROCS goroutines. One operation is
// one request's Admit and its Finish; p50-µs and p99-µs are Admit's own
// latency, what a request waits for before it is forwarded.
func BenchmarkStoreAdmit(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchStoreAdmit(b, NewMemoryStore(nil)) })
	b.Run("redis", func(b *testing.B) {
		srv := startRedis(b)
		benchStoreAdmit(b, newTestRedisStore(b, srv, RedisOptions{}))
	})
}

func benchStoreAdmit(b *testing.B, s Store) {
	ctx := context.Background()
	ask := Ask{
		Limit:  Limit{RPM: 1 << 30, TPM: 1 << 40, Concurrency: 1 << 20},
		Global: GlobalLimit{RPM: 1 << 30, Concurrency: 1 << 20},
		Tokens: 100,
	}
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 4096)
		i := next.Add(1)
		for pb.Next() {
			a := ask
			a.Key = keys[i%int64(len(keys))]
			i++
			t0 := time.Now()
			d, err := s.Admit(ctx, a)
			local = append(local, time.Since(t0))
			if err != nil || !d.Allowed {
				b.Errorf("admit: %+v %v", d, err)
				return
			}
			if err := s.Finish(ctx, d.Ticket, 50); err != nil {
				b.Error(err)
				return
			}
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkGuardRedisStore is BenchmarkGuard with its limits in Redis: the
// difference between the two is what the shared store costs a request.
func BenchmarkGuardRedisStore(b *testing.B) {
	srv := startRedis(b)
	s := newTestRedisStore(b, srv, RedisOptions{})
	h := newHarness(b, withAuditor(discardAudit{}), withStore(s),
		withLimits(`{"rate_limits": {"default": {"rpm": 1000000000, "tpm": 1000000000, "concurrency": 100000}}}`))
	runBench(b, h.url, keyUser2)
}
