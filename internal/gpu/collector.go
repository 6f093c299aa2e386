package gpu

import (
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the GPUs as Prometheus metrics, reading NVML at each
// scrape. Register it on the daemon's own registry. Labels follow
// DCGM-exporter's in snake_case: gpu (the NVML index), uuid, model_name.
type Collector struct {
	m      *Monitor
	logger hclog.Logger

	memUsed, memTotal, util, temp, power, ecc, xid, lastXID *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector over m.
func NewCollector(m *Monitor) *Collector {
	labels := []string{"gpu", "uuid", "model_name"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("glmctl_gpu_"+name, help, labels, nil)
	}
	return &Collector{
		m:        m,
		logger:   m.logger,
		memUsed:  desc("memory_used_bytes", "GPU memory in use, in bytes."),
		memTotal: desc("memory_total_bytes", "GPU memory in total, in bytes."),
		util:     desc("utilization_ratio", "Fraction of the last sample period during which a kernel ran on the GPU."),
		temp:     desc("temperature_celsius", "GPU core temperature in degrees Celsius."),
		power:    desc("power_watts", "GPU board power draw in watts."),
		ecc:      desc("ecc_errors_total", "Uncorrected (volatile) ECC errors since the NVIDIA driver loaded."),
		xid:      desc("xid_errors_total", "Critical XID events seen since glmctl started."),
		lastXID:  desc("last_xid", "Code of the last critical XID event seen since glmctl started (0: none): 48, 63, 64, 74, 79, 92, 94, 95, 119, 120… (see NVIDIA's XID catalogue)."),
	}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.memUsed, c.memTotal, c.util, c.temp, c.power, c.ecc, c.xid, c.lastXID} {
		ch <- d
	}
}

// Collect reads every GPU and sends its metrics. A GPU that cannot be read
// is left out of this scrape (and logged) rather than failing the scrape;
// its XID counter is still sent. Readings a GPU does not support are left
// out.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	devs, err := c.m.Snapshot()
	if err != nil {
		c.logger.Warn("GPU metrics: cannot read some GPUs", "error", err.Error())
	}
	for i := range devs {
		d := &devs[i]
		lv := []string{strconv.Itoa(d.Index), d.UUID, d.Name}
		gauge := func(desc *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, lv...)
		}
		gauge(c.memUsed, float64(d.MemoryUsed))
		gauge(c.memTotal, float64(d.MemoryTotal))
		if d.Has(FieldUtilization) {
			gauge(c.util, d.Utilization)
		}
		if d.Has(FieldTemperature) {
			gauge(c.temp, d.Temperature)
		}
		if d.Has(FieldPower) {
			gauge(c.power, d.Power)
		}
		if d.Has(FieldECC) {
			ch <- prometheus.MustNewConstMetric(c.ecc, prometheus.CounterValue, float64(d.ECCUncorrected), lv...)
		}
	}
	// XID counts are the Monitor's own, so they exist from start-up (at 0)
	// even for a GPU NVML could not read this time.
	for _, g := range c.m.info {
		ch <- prometheus.MustNewConstMetric(c.xid, prometheus.CounterValue,
			float64(c.m.xid[g.index].Load()), strconv.Itoa(g.index), g.uuid, g.name)
		ch <- prometheus.MustNewConstMetric(c.lastXID, prometheus.GaugeValue,
			float64(c.m.lastXID[g.index].Load()), strconv.Itoa(g.index), g.uuid, g.name)
	}
}
