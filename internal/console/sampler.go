package console

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metric families the console samples (pkg/guard/metrics.go).
const (
	mRequests     = "glmctl_guard_requests_total"
	mDuration     = "glmctl_guard_request_duration_seconds"
	mTTFT         = "glmctl_guard_time_to_first_token_seconds"
	mInFlight     = "glmctl_guard_in_flight_requests"
	mRejections   = "glmctl_guard_rate_limit_rejections_total"
	mRemainingReq = "glmctl_guard_rate_limit_remaining_requests"
	mRemainingTok = "glmctl_guard_rate_limit_remaining_tokens"
	mSlotsInUse   = "glmctl_guard_rate_limit_concurrency_in_use"
)

// limitOrder is the order of the refusal series (the guard's limit label).
var limitOrder = []string{"rpm", "tpm", "concurrency", "global_rpm", "global_concurrency"}

// sample is one reading of the guard's metrics.
type sample struct {
	at       time.Time
	ok       bool // the guard's metrics were there
	requests float64
	errors   float64 // answers with a 5xx status
	duration hist
	ttft     hist
	inFlight float64
	refused  map[string]float64 // by limit
	// Per key: requests answered, remaining rpm and tpm budget (absent:
	// unlimited or unknown).
	keyRequests  map[string]float64
	remainingReq map[string]float64
	remainingTok map[string]float64
	slotsInUse   map[string]float64 // concurrency slots held (absent: no limit)
}

// hist is a cumulative histogram summed over its label values.
type hist struct {
	bounds []float64 // upper bounds, ascending, +Inf last
	counts []float64 // cumulative
}

func (h *hist) add(m *dto.Histogram) {
	if len(h.bounds) == 0 {
		for _, b := range m.GetBucket() {
			h.bounds = append(h.bounds, b.GetUpperBound())
			h.counts = append(h.counts, 0)
		}
		h.bounds = append(h.bounds, math.Inf(1))
		h.counts = append(h.counts, 0)
	}
	bs := m.GetBucket()
	if len(bs)+1 != len(h.bounds) {
		return // another layout: not summable
	}
	for i, b := range bs {
		h.counts[i] += float64(b.GetCumulativeCount())
	}
	h.counts[len(bs)] += float64(m.GetSampleCount())
}

// quantile of the observations between two readings, interpolated within
// its bucket as Prometheus' histogram_quantile does; NaN when none.
func quantile(q float64, older, newer hist) float64 {
	if len(newer.bounds) == 0 || len(older.counts) != len(newer.counts) {
		return math.NaN()
	}
	n := len(newer.counts)
	delta := make([]float64, n)
	for i := range delta {
		delta[i] = math.Max(0, newer.counts[i]-older.counts[i])
	}
	total := delta[n-1]
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	i := sort.Search(n, func(i int) bool { return delta[i] >= rank })
	if i >= n-1 { // in +Inf: the highest finite bound is all that is known
		if n >= 2 {
			return newer.bounds[n-2]
		}
		return math.NaN()
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = newer.bounds[i-1], delta[i-1]
	}
	inBucket := delta[i] - below
	if inBucket <= 0 {
		return newer.bounds[i]
	}
	return lo + (newer.bounds[i]-lo)*(rank-below)/inBucket
}

// sampler keeps the last samples in a ring.
type sampler struct {
	g    prometheus.Gatherer
	mu   sync.Mutex
	ring []sample
	next int
	full bool
	// lastUsed is when a key's request counter was last seen to grow.
	lastUsed map[string]time.Time
}

func newSampler(g prometheus.Gatherer, size int) *sampler {
	if size < 2 {
		size = 2
	}
	return &sampler{g: g, ring: make([]sample, size), lastUsed: map[string]time.Time{}}
}

// sample reads the metrics once and keeps the reading.
func (sp *sampler) sample(now time.Time) {
	if sp.g == nil {
		return
	}
	mfs, err := sp.g.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	s := sample{at: now, refused: map[string]float64{}, keyRequests: map[string]float64{},
		remainingReq: map[string]float64{}, remainingTok: map[string]float64{}, slotsInUse: map[string]float64{}}
	for _, mf := range mfs {
		switch mf.GetName() {
		case mRequests:
			s.ok = true
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue()
				s.requests += v
				if code, _ := strconv.Atoi(label(m, "code")); code >= 500 {
					s.errors += v
				}
				s.keyRequests[label(m, "key")] += v
			}
		case mDuration:
			for _, m := range mf.GetMetric() {
				s.duration.add(m.GetHistogram())
			}
		case mTTFT:
			for _, m := range mf.GetMetric() {
				s.ttft.add(m.GetHistogram())
			}
		case mInFlight:
			for _, m := range mf.GetMetric() {
				s.inFlight += m.GetGauge().GetValue()
			}
		case mRejections:
			for _, m := range mf.GetMetric() {
				s.refused[label(m, "limit")] += m.GetCounter().GetValue()
			}
		case mRemainingReq:
			for _, m := range mf.GetMetric() {
				s.remainingReq[label(m, "key")] = m.GetGauge().GetValue()
			}
		case mRemainingTok:
			for _, m := range mf.GetMetric() {
				s.remainingTok[label(m, "key")] = m.GetGauge().GetValue()
			}
		case mSlotsInUse:
			for _, m := range mf.GetMetric() {
				s.slotsInUse[label(m, "key")] = m.GetGauge().GetValue()
			}
		}
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if prev, ok := sp.latestLocked(); ok {
		for k, v := range s.keyRequests {
			if v > prev.keyRequests[k] {
				sp.lastUsed[k] = now
			}
		}
	}
	sp.ring[sp.next] = s
	sp.next = (sp.next + 1) % len(sp.ring)
	if sp.next == 0 {
		sp.full = true
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (sp *sampler) latestLocked() (sample, bool) {
	if !sp.full && sp.next == 0 {
		return sample{}, false
	}
	return sp.ring[(sp.next-1+len(sp.ring))%len(sp.ring)], true
}

// samples returns the kept samples, oldest first.
func (sp *sampler) samples() []sample {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if !sp.full {
		return append([]sample(nil), sp.ring[:sp.next]...)
	}
	return append(append([]sample(nil), sp.ring[sp.next:]...), sp.ring[:sp.next]...)
}

// latest returns the newest sample.
func (sp *sampler) latest() (sample, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.latestLocked()
}

// keyLastUsed returns when the key's request counter last grew while the
// console watched (zero: not seen).
func (sp *sampler) keyLastUsed(name string) time.Time {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.lastUsed[name]
}

// point is one value of a series at a time; NaN is a gap.
type point struct {
	at time.Time
	v  float64
}

// guardSeries are the chart series derived from consecutive samples.
type guardSeries struct {
	ok                   bool
	rate, errRatio       []point
	p50, p99             []point // seconds
	ttft50, ttft99       []point // seconds
	inFlight             []point
	refused              map[string][]point // per second, by limit
	lastRate, lastErr    float64
	lastP50, lastP99     float64
	lastTTFT50, lastTT99 float64
	lastInFlight         float64
}

// series derives the charts' series from the samples.
func (sp *sampler) series() guardSeries {
	ss := sp.samples()
	g := guardSeries{refused: map[string][]point{}, lastRate: math.NaN(), lastErr: math.NaN(),
		lastP50: math.NaN(), lastP99: math.NaN(), lastTTFT50: math.NaN(), lastTT99: math.NaN(), lastInFlight: math.NaN()}
	for i := 1; i < len(ss); i++ {
		a, b := ss[i-1], ss[i]
		if !a.ok || !b.ok {
			continue
		}
		g.ok = true
		dt := b.at.Sub(a.at).Seconds()
		if dt <= 0 {
			continue
		}
		dReq := math.Max(0, b.requests-a.requests)
		rate := dReq / dt
		errRatio := math.NaN()
		if dReq > 0 {
			errRatio = math.Max(0, b.errors-a.errors) / dReq
		}
		p50, p99 := quantile(0.5, a.duration, b.duration), quantile(0.99, a.duration, b.duration)
		t50, t99 := quantile(0.5, a.ttft, b.ttft), quantile(0.99, a.ttft, b.ttft)
		g.rate = append(g.rate, point{b.at, rate})
		g.errRatio = append(g.errRatio, point{b.at, errRatio})
		g.p50 = append(g.p50, point{b.at, p50})
		g.p99 = append(g.p99, point{b.at, p99})
		g.ttft50 = append(g.ttft50, point{b.at, t50})
		g.ttft99 = append(g.ttft99, point{b.at, t99})
		g.inFlight = append(g.inFlight, point{b.at, b.inFlight})
		for _, l := range limitOrder {
			g.refused[l] = append(g.refused[l], point{b.at, math.Max(0, b.refused[l]-a.refused[l]) / dt})
		}
		g.lastRate, g.lastErr, g.lastP50, g.lastP99 = rate, errRatio, p50, p99
		g.lastTTFT50, g.lastTT99, g.lastInFlight = t50, t99, b.inFlight
	}
	if len(ss) > 0 && ss[len(ss)-1].ok {
		g.ok = true
		g.lastInFlight = ss[len(ss)-1].inFlight
	}
	return g
}
