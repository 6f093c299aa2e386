package guard

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the guard's Prometheus collectors.
type metrics struct {
	requests   *prometheus.CounterVec // by status code
	rejected   *prometheus.CounterVec // by reason
	duration   prometheus.Histogram
	inFlight   prometheus.Gauge
	tokens     *prometheus.CounterVec // prompt | completion
	reloadOK   *prometheus.GaugeVec
	reloadTime *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_requests_total",
			Help: "Requests answered by the guard, by HTTP status code.",
		}, []string{"code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_rejected_total",
			Help: "Requests the guard refused itself, by reason.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "glmctl_guard_request_duration_seconds",
			Help:    "Time from request to the end of the response, streams included.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glmctl_guard_in_flight_requests",
			Help: "Requests being proxied now.",
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_tokens_total",
			Help: "Tokens reported by the upstream, by kind (prompt, completion).",
		}, []string{"kind"}),
		reloadOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "glmctl_config_last_reload_successful",
			Help: "Whether the last load of the file succeeded (1) or kept the previous state (0).",
		}, []string{"file"}),
		reloadTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "glmctl_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful load of the file.",
		}, []string{"file"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.rejected, m.duration, m.inFlight, m.tokens, m.reloadOK, m.reloadTime} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register guard metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) reloaded(file string, ok bool) {
	if ok {
		m.reloadOK.WithLabelValues(file).Set(1)
		m.reloadTime.WithLabelValues(file).Set(float64(time.Now().UnixNano()) / 1e9)
		return
	}
	m.reloadOK.WithLabelValues(file).Set(0)
}

func (m *metrics) done(code int, reason string, d time.Duration, prompt, completion int64) {
	m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	if reason != "" {
		m.rejected.WithLabelValues(reason).Inc()
	}
	m.duration.Observe(d.Seconds())
	if prompt > 0 {
		m.tokens.WithLabelValues("prompt").Add(float64(prompt))
	}
	if completion > 0 {
		m.tokens.WithLabelValues("completion").Add(float64(completion))
	}
}
