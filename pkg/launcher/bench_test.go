package launcher

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// BenchmarkCrashToRestart measures crash-to-restart latency with zero
// backoff, keeper included, from the crashing program's last act before it
// exits (its own timestamp) to
//   - exec-ms: its replacement exec'd and RUNNING (start_secs = 0), and
//   - main-ms: the replacement's first act in main (its own timestamp; this
//     adds the start-up of the test binary, a 13 MB Go program).
func BenchmarkCrashToRestart(b *testing.B) {
	p := prog("crash", selfCmd("crash", "1", "0s"))
	p.StartSecs = 0
	p.Backoff = config.Backoff{}
	running := make(chan time.Time, 1<<16)
	s, err := New([]*config.Program{p}, Options{OnEvent: func(e Event) {
		if e.To == StateRunning {
			running <- e.Time
		}
	}})
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

	stamp := func(prefix string) time.Time {
		for l := range lines {
			if v, ok := strings.CutPrefix(l, prefix); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return time.Unix(0, n)
			}
		}
		b.Fatal("output ended")
		return time.Time{}
	}
	stamp("start ")
	<-running
	toExec := make([]time.Duration, 0, b.N)
	toMain := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		exit := stamp("exit ")
		start := stamp("start ")
		toMain = append(toMain, start.Sub(exit))
		toExec = append(toExec, (<-running).Sub(exit))
	}
	b.StopTimer()
	report := func(lat []time.Duration, unit string) {
		slices.Sort(lat)
		q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(q(0.5), "p50-"+unit)
		b.ReportMetric(q(0.99), "p99-"+unit)
	}
	report(toExec, "exec-ms")
	report(toMain, "main-ms")
}
