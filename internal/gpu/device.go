package gpu

import (
	"fmt"
	"strconv"
	"strings"
)

// Field names a reading that a GPU may not supply (NVML answers "not
// supported", or the query failed). Device.Missing holds a set of them.
type Field uint8

// Optional readings.
const (
	FieldUtilization Field = 1 << iota
	FieldTemperature
	FieldPower
	FieldECC
	FieldRemap
)

// Device is one GPU as NVML saw it at one moment.
type Device struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	UUID  string `json:"uuid"`

	MemoryUsed  uint64 `json:"memory_used_bytes"`
	MemoryTotal uint64 `json:"memory_total_bytes"`
	MemoryFree  uint64 `json:"memory_free_bytes"`

	// Utilization is the fraction of time a kernel ran over NVML's last
	// sample period, 0 to 1.
	Utilization float64 `json:"utilization_ratio"`
	// Temperature is the GPU core temperature in degrees Celsius.
	Temperature float64 `json:"temperature_celsius"`
	// Power is the board's power draw in watts.
	Power float64 `json:"power_watts"`
	// ECCUncorrected counts uncorrected (volatile) ECC errors since the
	// driver loaded; more than zero means the GPU needs a reset.
	ECCUncorrected uint64 `json:"ecc_uncorrected_errors"`
	// RemapPending is set when a row remapping waits for a GPU reset;
	// RemapFailed when remapping failed (the GPU needs service).
	RemapPending bool `json:"row_remap_pending"`
	RemapFailed  bool `json:"row_remap_failed"`
	// XIDErrors counts critical XID events seen by this Monitor's watcher.
	XIDErrors uint64 `json:"xid_errors"`
	// LastXID is the code of the last of them (0: none), e.g. 79: the GPU
	// fell off the bus; XIDMeaning says what the well-known ones mean.
	LastXID uint64 `json:"last_xid"`

	// Processes are the compute processes holding memory on this GPU.
	Processes []Process `json:"processes"`

	// Missing is the set of readings NVML did not supply; their fields
	// above are zero.
	Missing Field `json:"-"`
}

// Process is a compute process holding GPU memory.
type Process struct {
	// PID is as NVML reports it: a PID in the host's PID namespace.
	PID int `json:"pid"`
	// UsedMemory is in bytes; 0 when NVML cannot say (MIG, permissions).
	UsedMemory uint64 `json:"used_memory_bytes"`
}

// Has reports whether the reading f was supplied.
func (d *Device) Has(f Field) bool { return d.Missing&f == 0 }

// Label names the GPU in messages: "GPU 2 (NVIDIA H100 80GB HBM3, GPU-…)".
func (d *Device) Label() string { return label(d.Index, d.Name, d.UUID) }

func label(index int, name, uuid string) string {
	return fmt.Sprintf("GPU %d (%s, %s)", index, name, uuid)
}

// GiB formats a byte count as "12.0 GiB".
func GiB(bytes uint64) string {
	return fmt.Sprintf("%.1f GiB", float64(bytes)/(1<<30))
}

// formatProcesses renders "1234 (30.0 GiB), 5678 (2.0 GiB)".
func formatProcesses(ps []Process) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		if p.UsedMemory == 0 {
			parts = append(parts, strconv.Itoa(p.PID))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d (%s)", p.PID, GiB(p.UsedMemory)))
	}
	return strings.Join(parts, ", ")
}

// FormatProcesses renders a GPU's processes for a table cell: "-" when
// there are none, else "PID (MEM), …".
func FormatProcesses(ps []Process) string {
	if len(ps) == 0 {
		return "-"
	}
	return formatProcesses(ps)
}

// Summary renders GPUs in one line for `glmctl status`, e.g.
// "4 × NVIDIA H100 80GB HBM3, 280.0 GiB / 320.0 GiB used, 41–65 °C". Mixed
// models are listed by name.
func Summary(devs []Device) string {
	if len(devs) == 0 {
		return "no GPUs"
	}
	var (
		names        []string
		count        = map[string]int{}
		used, total  uint64
		tmin, tmax   float64
		haveTemp     bool
		eccs, remaps int
	)
	for _, d := range devs {
		if count[d.Name] == 0 {
			names = append(names, d.Name)
		}
		count[d.Name]++
		used += d.MemoryUsed
		total += d.MemoryTotal
		if d.Has(FieldTemperature) {
			if !haveTemp || d.Temperature < tmin {
				tmin = d.Temperature
			}
			if !haveTemp || d.Temperature > tmax {
				tmax = d.Temperature
			}
			haveTemp = true
		}
		if d.Has(FieldECC) && d.ECCUncorrected > 0 {
			eccs++
		}
		if d.Has(FieldRemap) && (d.RemapPending || d.RemapFailed) {
			remaps++
		}
	}
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%d × %s", count[n], n))
	}
	s := fmt.Sprintf("%s, %s / %s used", strings.Join(parts, ", "), GiB(used), GiB(total))
	if haveTemp {
		if tmin == tmax {
			s += fmt.Sprintf(", %.0f °C", tmax)
		} else {
			s += fmt.Sprintf(", %.0f–%.0f °C", tmin, tmax)
		}
	}
	if eccs > 0 {
		s += fmt.Sprintf(", %d with uncorrected ECC errors", eccs)
	}
	if remaps > 0 {
		s += fmt.Sprintf(", %d needing a reset (row remapping)", remaps)
	}
	return s
}
