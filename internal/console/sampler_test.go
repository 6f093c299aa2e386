package console

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/glmctl/glmctl/internal/gpu"
)

// guardMetrics registers the guard's families (the names and labels of
// pkg/guard/metrics.go) on a fresh registry.
type guardMetrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	ttft       *prometheus.HistogramVec
	inFlight   prometheus.Gauge
	rejections *prometheus.CounterVec
	remReq     *prometheus.GaugeVec
	remTok     *prometheus.GaugeVec
	slots      *prometheus.GaugeVec
}

func newGuardMetrics() *guardMetrics {
	m := &guardMetrics{
		reg:      prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: mRequests, Help: "h"}, []string{"key", "model", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mDuration, Help: "h",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}}, []string{"route"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mTTFT, Help: "h",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"route"}),
		inFlight:   prometheus.NewGauge(prometheus.GaugeOpts{Name: mInFlight, Help: "h"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: mRejections, Help: "h"}, []string{"key", "limit"}),
		remReq:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: mRemainingReq, Help: "h"}, []string{"key"}),
		remTok:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: mRemainingTok, Help: "h"}, []string{"key"}),
		slots:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: mSlotsInUse, Help: "h"}, []string{"key"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.ttft, m.inFlight, m.rejections, m.remReq, m.remTok, m.slots)
	return m
}

func TestSamplerSeries(t *testing.T) {
	m := newGuardMetrics()
	sp := newSampler(m.reg, 121)
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	m.requests.WithLabelValues("alice", "glm", "/v1/chat/completions", "200").Add(5)
	sp.sample(t0)
	// 5 s later: 50 more requests, 5 of them 5xx, latencies 40 ms (45)
	// and 2 s (5), 3 in flight, 4 refused by rpm.
	m.requests.WithLabelValues("alice", "glm", "/v1/chat/completions", "200").Add(45)
	m.requests.WithLabelValues("alice", "glm", "/v1/chat/completions", "502").Add(5)
	for range 45 {
		m.duration.WithLabelValues("/v1/chat/completions").Observe(0.04)
	}
	for range 5 {
		m.duration.WithLabelValues("/v1/embeddings").Observe(2)
	}
	m.ttft.WithLabelValues("/v1/chat/completions").Observe(0.2)
	m.inFlight.Set(3)
	m.rejections.WithLabelValues("alice", "rpm").Add(4)
	m.remReq.WithLabelValues("alice").Set(70)
	m.slots.WithLabelValues("alice").Set(3)
	sp.sample(t0.Add(5 * time.Second))

	g := sp.series()
	if !g.ok || len(g.rate) != 1 {
		t.Fatalf("series %+v", g)
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9*math.Max(1, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("rate", g.lastRate, 10)
	near("5xx share", g.lastErr, 0.1)
	// p50: rank 25 of 50 in the (0.025, 0.05] bucket holding 45: 0.025 + 0.025×25/45.
	near("p50", g.lastP50, 0.025+0.025*25/45)
	// p99: rank 49.5 in (1, 2.5] holding the 5 slow ones: 1 + 1.5×4.5/5.
	near("p99", g.lastP99, 1+1.5*4.5/5)
	near("ttft p50", g.lastTTFT50, 0.1+0.15*0.5)
	near("in flight", g.lastInFlight, 3)
	near("rpm refusals/s", g.refused["rpm"][0].v, 0.8)
	if !sp.keyLastUsed("alice").Equal(t0.Add(5 * time.Second)) {
		t.Errorf("alice last used %v", sp.keyLastUsed("alice"))
	}
	if l, _ := sp.latest(); l.remainingReq["alice"] != 70 || l.slotsInUse["alice"] != 3 {
		t.Errorf("remaining %v, slots in use %v", l.remainingReq, l.slotsInUse)
	}
	if b := inUse(map[string]float64{"alice": 3}, true, "alice", 8, "concurrent"); b.Text != "3 / 8 concurrent" || b.Level != "ok" {
		t.Errorf("alice's concurrency bar %+v, want 3 / 8 concurrent", b)
	}
	if b := inUse(nil, true, "bob", 0, "concurrent"); b.Text != "unlimited" {
		t.Errorf("no limit: %+v", b)
	}

	// No traffic between two samples: no latency point, a gap in the chart.
	sp.sample(t0.Add(10 * time.Second))
	g = sp.series()
	if !math.IsNaN(g.lastP50) || !math.IsNaN(g.lastErr) || g.lastRate != 0 {
		t.Errorf("idle interval: p50 %v, err %v, rate %v; want NaN, NaN, 0", g.lastP50, g.lastErr, g.lastRate)
	}
	// The ring keeps its size.
	for i := range 300 {
		sp.sample(t0.Add(time.Duration(15+5*i) * time.Second))
	}
	if n := len(sp.samples()); n != 121 {
		t.Errorf("%d samples kept, want 121", n)
	}
}

func TestQuantileEdges(t *testing.T) {
	empty := hist{bounds: []float64{1, math.Inf(1)}, counts: []float64{0, 0}}
	if !math.IsNaN(quantile(0.5, empty, empty)) {
		t.Errorf("no observations: want NaN")
	}
	inf := hist{bounds: []float64{1, 2, math.Inf(1)}, counts: []float64{0, 0, 10}}
	if got := quantile(0.99, empty3(), inf); got != 2 {
		t.Errorf("all in +Inf: %v, want the highest finite bound 2", got)
	}
	if !math.IsNaN(quantile(0.5, hist{}, hist{})) {
		t.Errorf("no histogram: want NaN")
	}
}

func empty3() hist { return hist{bounds: []float64{1, 2, math.Inf(1)}, counts: []float64{0, 0, 0}} }

func TestLineChartSVG(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	pts := []point{{t0.Add(time.Minute), 1}, {t0.Add(2 * time.Minute), 3}, {t0.Add(3 * time.Minute), math.NaN()},
		{t0.Add(4 * time.Minute), 2}, {t0.Add(5 * time.Minute), 0}}
	c := lineChart(`Req <b>"x"`, "per second", t0, t0.Add(10*time.Minute), 1, fmtRate, chartSeries{Name: "req/s", Class: "s0", pts: pts})
	svg := string(c.SVG)
	if strings.Count(svg, "<polyline") != 2 {
		t.Errorf("want two segments around the gap:\n%s", svg)
	}
	if strings.Contains(svg, "<b>") || !strings.Contains(svg, "&lt;b&gt;") {
		t.Errorf("title not escaped: %s", svg)
	}
	if strings.Contains(svg, "style=") || strings.Contains(svg, "NaN") {
		t.Errorf("inline style or NaN in the SVG: %s", svg)
	}
	if c.Max != "3.00" || c.Series[0].Last != "0" {
		t.Errorf("max %q last %q", c.Max, c.Series[0].Last)
	}
	b := usageBar(90, 100, "rpm")
	if b.Level != "warn" || b.Text != "90 / 100 rpm" || !strings.Contains(string(b.SVG), `width="90.0"`) {
		t.Errorf("bar %+v", b)
	}
	if b := usageBar(0, 0, "rpm"); b.Text != "unlimited" || b.SVG != "" {
		t.Errorf("unlimited bar %+v", b)
	}
	if b := usageBar(500, 100, "rpm"); b.Level != "full" || !strings.Contains(string(b.SVG), `width="100.0"`) {
		t.Errorf("over-full bar %+v", b)
	}
}

// demoGPUs are four GPUs under load, as NVML would read them.
func demoGPUs() []gpu.Device {
	var out []gpu.Device
	for i := range 4 {
		out = append(out, gpu.Device{Index: i, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-3f2a9c1e-0b7d-4c5e-9a1f-00000000000" + string(rune('0'+i)),
			MemoryUsed: 712 * (1 << 30) / 10, MemoryTotal: 796 * (1 << 30) / 10, Utilization: 0.98 - 0.03*float64(i),
			Temperature: 64 + float64(i), Power: 512 - 20*float64(i),
			Processes: []gpu.Process{{PID: 4242 + i, UsedMemory: 70 << 30}}})
	}
	return out
}
