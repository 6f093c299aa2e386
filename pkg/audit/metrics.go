package audit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the writer's Prometheus series.
type metrics struct {
	records   prometheus.Counter
	errors    prometheus.Counter
	bytes     prometheus.Counter
	lastWrite prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glmctl_audit_records_total",
			Help: "Audit records written to the log (admin notes of the writer excluded).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glmctl_audit_write_errors_total",
			Help: "Audit records that could not be written (disk full, permission, removed directory…).",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glmctl_audit_bytes_total",
			Help: "Bytes appended to the audit log.",
		}),
		lastWrite: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glmctl_audit_last_write_timestamp_seconds",
			Help: "Unix time of the last successful audit write.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.records, m.errors, m.bytes, m.lastWrite}
}

// register adds the series to reg (all or none).
func (m *metrics) register(reg prometheus.Registerer) error {
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("register audit metrics: %w", err)
		}
	}
	return nil
}

// unregister removes the series from reg, so that a new writer (a config
// reload) can register its own.
func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}
