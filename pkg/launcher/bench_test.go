package launcher

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/pkg/config"
)

// BenchmarkCrashToRestart measures, with zero backoff, the time from a
// program's last act before it exits to the first act of its replacement
// (both timestamps taken by the programs themselves), keeper included.
func BenchmarkCrashToRestart(b *testing.B) {
	p := prog("crash", selfCmd("crash", "1", "0s"))
	p.StartSecs = 0
	p.Backoff = config.Backoff{}
	s, err := New([]*config.Program{p}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lines, err := s.Follow(ctx, "crash")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	stamp := func(prefix string) int64 {
		for l := range lines {
			if v, ok := strings.CutPrefix(l, prefix); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		b.Fatal("output ended")
		return 0
	}
	stamp("start ")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		exit := stamp("exit ")
		start := stamp("start ")
		lat = append(lat, time.Duration(start-exit))
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
