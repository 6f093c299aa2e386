package console

import (
	"fmt"
	"strings"
	"time"

	"github.com/glmctl/glmctl/internal/control"
	"github.com/glmctl/glmctl/internal/gpu"
)

// programsView is the programs section.
type programsView struct {
	Err  string
	Rows []programRow
}

type programRow struct {
	Name, State, Health, Message string
	Class                        string // ok, warn, bad: the state's colour
	PID                          int
	Uptime                       string
	Restarts                     int
	LastExit                     string
	CanStart, CanStop            bool
}

func stateClass(state string) string {
	switch state {
	case "RUNNING":
		return "ok"
	case "STARTING", "STOPPING", "BACKOFF":
		return "warn"
	case "STOPPED", "EXITED":
		return "idle"
	default: // FATAL, unknown
		return "bad"
	}
}

func (s *Server) programsView(st *control.StatusReply, stErr error) *programsView {
	v := &programsView{}
	if stErr != nil {
		v.Err = stErr.Error()
		return v
	}
	for _, p := range st.Programs {
		row := programRow{Name: p.Name, State: p.State, Health: p.Health, Message: p.Message, Class: stateClass(p.State),
			PID: p.PID, Restarts: p.Restarts, LastExit: "—"}
		if p.PID > 0 {
			row.Uptime = humanDuration(time.Duration(p.UptimeSeconds) * time.Second)
		}
		if p.LastExit != nil {
			row.LastExit = fmt.Sprint(*p.LastExit)
		}
		switch p.State {
		case "RUNNING", "STARTING", "BACKOFF":
			row.CanStop = true
		case "STOPPING":
		default:
			row.CanStart = true
		}
		v.Rows = append(v.Rows, row)
	}
	return v
}

// gpusView is the GPUs section: the devices, or one line saying why there
// are none.
type gpusView struct {
	Message string
	Rows    []gpuRow
}

type gpuRow struct {
	Index                   int
	Name, UUID              string
	MemUsed, MemTotal       string // GiB
	Mem                     bar
	Util, Temp, Power       string
	Processes               string
	XIDs, LastXID, ECC      uint64
	RemapPending, RemapFail bool
	Bad                     bool // XIDs, ECC errors or a failed remap
}

func (s *Server) gpusView(st *control.StatusReply) *gpusView {
	devs, err := s.opts.Backend.GPUs()
	v := &gpusView{}
	switch {
	case err != nil:
		v.Message = err.Error()
	case len(devs) == 0 && st != nil && st.GPUMessage != "":
		v.Message = st.GPUMessage
	case len(devs) == 0:
		v.Message = "No GPU is in use by the configuration."
	}
	for _, d := range devs {
		r := gpuRow{Index: d.Index, Name: d.Name, UUID: d.UUID,
			MemUsed: fmt.Sprintf("%.1f", float64(d.MemoryUsed)/(1<<30)), MemTotal: fmt.Sprintf("%.1f", float64(d.MemoryTotal)/(1<<30)),
			Util: "—", Temp: "—", Power: "—", Processes: "none",
			XIDs: d.XIDErrors, LastXID: d.LastXID, ECC: d.ECCUncorrected, RemapPending: d.RemapPending, RemapFail: d.RemapFailed}
		r.Mem = usageBar(float64(d.MemoryUsed)/(1<<30), float64(d.MemoryTotal)/(1<<30), "GiB")
		if d.Has(gpu.FieldUtilization) {
			r.Util = fmt.Sprintf("%.0f%%", d.Utilization*100)
		}
		if d.Has(gpu.FieldTemperature) {
			r.Temp = fmt.Sprintf("%.0f °C", d.Temperature)
		}
		if d.Has(gpu.FieldPower) {
			r.Power = fmt.Sprintf("%.0f W", d.Power)
		}
		if len(d.Processes) > 0 {
			var ps []string
			for _, p := range d.Processes {
				if p.UsedMemory > 0 {
					ps = append(ps, fmt.Sprintf("%d (%.1f GiB)", p.PID, float64(p.UsedMemory)/(1<<30)))
				} else {
					ps = append(ps, fmt.Sprint(p.PID))
				}
			}
			r.Processes = strings.Join(ps, ", ")
		}
		r.Bad = d.XIDErrors > 0 || d.ECCUncorrected > 0 || d.RemapFailed
		v.Rows = append(v.Rows, r)
	}
	return v
}

// guardView is the guard section: its state, files and charts.
type guardView struct {
	Configured     bool
	Ready          bool
	Listen         string
	Upstream       string
	Open, Max      int
	Files          []control.FileStatus
	Charts         []chart
	NoMetrics      string
	Window         string // "10m"
	RefusedLegend  []chartSeries
	SampleInterval string
}

func (s *Server) guardView(st *control.StatusReply) *guardView {
	v := &guardView{Window: humanWindow(s.opts.History), SampleInterval: s.opts.SampleEvery.String()}
	if st != nil && st.Guard != nil {
		g := st.Guard
		v.Configured, v.Ready, v.Listen, v.Upstream = true, g.Ready, g.Listen, g.Upstream
		v.Open, v.Max, v.Files = g.OpenConnections, g.MaxConnections, g.Files
	}
	if s.opts.Gatherer == nil {
		v.NoMetrics = "No metrics registry was given to the console: no charts."
		return v
	}
	gs := s.sampler.series()
	if !gs.ok {
		v.NoMetrics = "No guard metrics yet (the charts need two samples, " + s.opts.SampleEvery.String() + " apart)."
		return v
	}
	to := s.now()
	from := to.Add(-s.opts.History)
	v.Charts = []chart{
		lineChart("Requests", "per second", from, to, 1, fmtRate, chartSeries{Name: "req/s", Class: "s0", pts: gs.rate}),
		lineChart("Errors", "5xx share", from, to, 0.05, fmtPct, chartSeries{Name: "5xx", Class: "s3", pts: gs.errRatio}),
		lineChart("Latency", "whole request", from, to, 0.1, fmtSeconds,
			chartSeries{Name: "p50", Class: "s0", pts: gs.p50}, chartSeries{Name: "p99", Class: "s1", pts: gs.p99}),
		lineChart("Time to first token", "", from, to, 0.1, fmtSeconds,
			chartSeries{Name: "p50", Class: "s0", pts: gs.ttft50}, chartSeries{Name: "p99", Class: "s1", pts: gs.ttft99}),
		lineChart("In flight", "requests", from, to, 1, fmtRate, chartSeries{Name: "now", Class: "s2", pts: gs.inFlight}),
	}
	var refused []chartSeries
	for i, l := range limitOrder {
		refused = append(refused, chartSeries{Name: l, Class: fmt.Sprintf("s%d", i), pts: gs.refused[l]})
	}
	v.Charts = append(v.Charts, lineChart("429s by limit", "per second", from, to, 0.1, fmtRate, refused...))
	return v
}

func humanWindow(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.String()
}

// configView is the configuration in force.
type configView struct {
	Path, SHA256      string
	LoadedAt          time.Time
	LastReloadError   string
	LastReloadErrorAt time.Time
	Unknown           bool
}

func configViewOf(st *control.StatusReply) *configView {
	if st == nil || st.Config == nil {
		return &configView{Unknown: true}
	}
	c := st.Config
	return &configView{Path: c.Path, SHA256: c.SHA256, LoadedAt: c.LoadedAt,
		LastReloadError: c.LastReloadError, LastReloadErrorAt: c.LastReloadErrorAt}
}

// fill builds the named sections of v from one status reading.
func (s *Server) fill(v *view, parts ...string) {
	var st *control.StatusReply
	var stErr error
	needStatus := false
	for _, p := range parts {
		if p != "keys" {
			needStatus = true
		}
	}
	if needStatus {
		st, stErr = s.opts.Backend.Status()
	}
	for _, p := range parts {
		switch p {
		case "programs":
			v.Programs = s.programsView(st, stErr)
		case "gpus":
			v.GPUs = s.gpusView(st)
		case "guard":
			v.Guard = s.guardView(st)
		case "config":
			v.Config = configViewOf(st)
		case "keys":
			v.Keys = s.keysView()
		}
	}
}

// liveParts are the sections /live may render.
var liveParts = map[string]bool{"programs": true, "gpus": true, "guard": true, "config": true, "keys": true}
