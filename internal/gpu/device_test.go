package gpu

import (
	"slices"
	"testing"

	"github.com/glmctl/glmctl/internal/config"
)

func TestSummary(t *testing.T) {
	h100 := func(i int, used uint64, temp float64) Device {
		return Device{Index: i, Name: "NVIDIA H100 80GB HBM3", MemoryUsed: used << 30, MemoryTotal: 80 << 30, Temperature: temp}
	}
	tests := []struct {
		name string
		devs []Device
		want string
	}{
		{"none", nil, "no GPUs"},
		{"four", []Device{h100(0, 70, 41), h100(1, 70, 65), h100(2, 70, 50), h100(3, 70, 44)},
			"4 × NVIDIA H100 80GB HBM3, 280.0 GiB / 320.0 GiB used, 41–65 °C"},
		{"one, ECC and remap", []Device{func() Device {
			d := h100(0, 1, 40)
			d.ECCUncorrected, d.RemapPending = 2, true
			return d
		}()}, "1 × NVIDIA H100 80GB HBM3, 1.0 GiB / 80.0 GiB used, 40 °C, 1 with uncorrected ECC errors, 1 needing a reset (row remapping)"},
		{"mixed, no temperature", []Device{
			{Name: "A", MemoryTotal: 1 << 30, Missing: FieldTemperature},
			{Name: "B", MemoryTotal: 1 << 30, Missing: FieldTemperature | FieldECC, ECCUncorrected: 9},
		}, "1 × A, 1 × B, 0.0 GiB / 2.0 GiB used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summary(tt.devs); got != tt.want {
				t.Errorf("Summary = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProgramsUsing(t *testing.T) {
	cfg := &config.Config{Programs: []*config.Program{
		{Name: "vllm", GPUs: []int{0, 1, 2, 3}}, {Name: "ui"}, {Name: "embed", GPUs: []int{3}},
	}}
	for gpu, want := range map[int][]string{0: {"vllm"}, 3: {"vllm", "embed"}, 7: nil} {
		if got := ProgramsUsing(cfg, gpu); !slices.Equal(got, want) {
			t.Errorf("ProgramsUsing(%d) = %q, want %q", gpu, got, want)
		}
	}
	if got := ProgramsUsing(nil, 0); got != nil {
		t.Errorf("ProgramsUsing(nil) = %q", got)
	}
}
