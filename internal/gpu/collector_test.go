//go:build cgo

package gpu

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	f := newFakeNVML(t, 4)
	f.set(0, func(s *fakeState) { s.used = 70 * gib; s.util = 100; s.temp = 65; s.powerMW = 650250 })
	f.set(1, func(s *fakeState) { s.noPower = true })
	f.set(2, func(s *fakeState) { s.ecc = 3 })
	m := mustOpen(t, f, nil)

	// One XID on GPU 3, through the watcher.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.WatchXID(ctx, nil) }()
	f.events <- nvml.EventData{Device: f.srv.Devices[3], EventType: nvml.EventTypeXidCriticalError, EventData: 94}
	waitFor(t, "the XID counted", func() bool { return m.XIDErrors(3) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("WatchXID: %v", err)
	}

	c := NewCollector(m)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("Register: %v", err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("GatherAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	lbl := func(i int) string {
		return fmt.Sprintf(`gpu="%d",model_name="NVIDIA H100 80GB HBM3",uuid="%s"`, i, uuidOf(i))
	}
	var b strings.Builder
	series := func(name, help, typ string, values ...string) {
		fmt.Fprintf(&b, "# HELP glmctl_gpu_%s %s\n# TYPE glmctl_gpu_%s %s\n", name, help, name, typ)
		for i, v := range values {
			if v != "" {
				fmt.Fprintf(&b, "glmctl_gpu_%s{%s} %s\n", name, lbl(i), v)
			}
		}
	}
	series("memory_used_bytes", "GPU memory in use, in bytes.", "gauge", "7.516192768e+10", "1.073741824e+09", "1.073741824e+09", "1.073741824e+09")
	series("memory_total_bytes", "GPU memory in total, in bytes.", "gauge", "8.589934592e+10", "8.589934592e+10", "8.589934592e+10", "8.589934592e+10")
	series("utilization_ratio", "Fraction of the last sample period during which a kernel ran on the GPU.", "gauge", "1", "0.37", "0.37", "0.37")
	series("temperature_celsius", "GPU core temperature in degrees Celsius.", "gauge", "65", "41", "41", "41")
	series("power_watts", "GPU board power draw in watts.", "gauge", "650.25", "", "123.5", "123.5")
	series("ecc_errors_total", "Uncorrected (volatile) ECC errors since the NVIDIA driver loaded.", "counter", "0", "0", "3", "0")
	series("xid_errors_total", "Critical XID events seen since glmctl started.", "counter", "0", "0", "0", "1")
	series("last_xid", "Code of the last critical XID event seen since glmctl started (0: none): 48, 63, 64, 74, 79, 92, 94, 95, 119, 120… (see NVIDIA's XID catalogue).", "gauge", "0", "0", "0", "94")
	if err := testutil.CollectAndCompare(c, strings.NewReader(b.String())); err != nil {
		t.Errorf("CollectAndCompare: %v", err)
	}
	if n := testutil.CollectAndCount(c); n != 31 {
		t.Errorf("CollectAndCount = %d, want 31 (power missing on GPU 1)", n)
	}
}
