package launcher

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the programs' state as Prometheus metrics. It reads
// Status at scrape time, so every configured program has its series from
// start-up, a program added by a reload appears and a removed one goes away:
//
//   - glmctl_program_state{program,state}: 1 for the current state, 0 for
//     the six others;
//   - glmctl_program_up{program}: 1 while a process of the program runs;
//   - glmctl_program_ready{program}: 1 while it is RUNNING and not failing
//     its health checks (what gates the guard);
//   - glmctl_program_restarts_total{program}: automatic restarts (crashes,
//     failed health checks); it starts again from 0 when a reload replaces
//     the program's definition;
//   - glmctl_program_last_exit_code{program}: the last exit code (128+N after
//     a death by signal N), -1 before the first exit;
//   - glmctl_program_start_time_seconds{program}: Unix time the current run
//     began, 0 when none;
//   - glmctl_program_uptime_seconds{program}: seconds since then, 0 when none.
type Collector struct {
	sup      *Supervisor
	now      func() time.Time
	states   []string // every state, in the order their series are exported
	state    *prometheus.Desc
	up       *prometheus.Desc
	ready    *prometheus.Desc
	restarts *prometheus.Desc
	lastExit *prometheus.Desc
	started  *prometheus.Desc
	uptime   *prometheus.Desc
}

// NewCollector returns a Collector of sup's programs; register it on the
// daemon's registry.
func NewCollector(sup *Supervisor) *Collector {
	prog := []string{"program"}
	return &Collector{
		sup:    sup,
		now:    sup.clock.Now,
		states: []string{StateStopped, StateStarting, StateRunning, StateBackoff, StateStopping, StateExited, StateFatal},
		state:  prometheus.NewDesc("glmctl_program_state", "Whether the program is in this state (1) or not (0).", []string{"program", "state"}, nil),
		up:     prometheus.NewDesc("glmctl_program_up", "Whether a process of the program is running (1) or not (0).", prog, nil),
		ready: prometheus.NewDesc("glmctl_program_ready",
			"Whether the program is RUNNING and passing its health checks (1) or not (0).", prog, nil),
		restarts: prometheus.NewDesc("glmctl_program_restarts_total",
			"Automatic restarts of the program (crashes, failed health checks).", prog, nil),
		lastExit: prometheus.NewDesc("glmctl_program_last_exit_code",
			"Exit code of the program's last run (128+N after a death by signal N); -1 before the first exit.", prog, nil),
		started: prometheus.NewDesc("glmctl_program_start_time_seconds",
			"Unix time the program's current run began; 0 when it does not run.", prog, nil),
		uptime: prometheus.NewDesc("glmctl_program_uptime_seconds",
			"Seconds since the program's current run began; 0 when it does not run.", prog, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.up, c.ready, c.restarts, c.lastExit, c.started, c.uptime} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	all, err := c.sup.Status()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.state, err)
		return
	}
	now := c.now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, st := range all {
		for _, s := range c.states {
			gauge(c.state, c.bool(st.State == s), st.Name, s)
		}
		gauge(c.up, c.bool(st.PID > 0), st.Name)
		gauge(c.ready, c.bool(st.State == StateRunning && (st.Health == HealthHealthy || st.Health == HealthNone)), st.Name)
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(st.Restarts), st.Name)
		exit := -1.0
		if st.LastExit != nil {
			exit = float64(*st.LastExit)
		}
		gauge(c.lastExit, exit, st.Name)
		var start, up float64
		if !st.Started.IsZero() {
			start = float64(st.Started.UnixNano()) / 1e9
			up = max(now.Sub(st.Started).Seconds(), 0)
		}
		gauge(c.started, start, st.Name)
		gauge(c.uptime, up, st.Name)
	}
}

// bool is a 0/1 gauge value.
func (*Collector) bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
