//go:build cgo

package gpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

func TestOpenNVMLMissing(t *testing.T) {
	f := newFakeNVML(t, 4)
	f.srv.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	shutdowns := 0
	f.srv.ShutdownFunc = func() nvml.Return { shutdowns++; return nvml.SUCCESS }
	m, err := OpenLibrary(f.srv, nil)
	if m != nil || err == nil {
		t.Fatalf("OpenLibrary = %v, %v; want nil and an error", m, err)
	}
	if !errors.Is(err, ErrUnavailable) || !IsUnavailable(err) {
		t.Errorf("error %v does not wrap ErrUnavailable", err)
	}
	if got, want := err.Error(), "NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA driver on this machine)"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	if shutdowns != 0 {
		t.Errorf("Shutdown called %d times after a failed Init", shutdowns)
	}

	f.srv.InitFunc = func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }
	if _, err := OpenLibrary(f.srv, nil); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "driver is not loaded") {
		t.Errorf("driver not loaded: error = %v", err)
	}
}

// TestOpenSystem runs the real go-nvml binding: on machines without the
// NVIDIA driver it must fail with one plain line, never crash.
func TestOpenSystem(t *testing.T) {
	m, err := Open(nil)
	if err != nil {
		if !IsUnavailable(err) {
			t.Fatalf("Open: %v does not wrap ErrUnavailable", err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Open error is not one line: %q", err)
		}
		t.Logf("no NVML here: %v", err)
		return
	}
	defer m.Close()
	devs, err := m.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if len(devs) != m.Count() {
		t.Errorf("Snapshot has %d GPUs, Count %d", len(devs), m.Count())
	}
	for _, d := range devs {
		t.Logf("%s: %s/%s used, util %.2f, %.0f C, %.1f W, ecc %d, missing %b, procs %s",
			d.Label(), GiB(d.MemoryUsed), GiB(d.MemoryTotal), d.Utilization, d.Temperature, d.Power, d.ECCUncorrected, d.Missing, FormatProcesses(d.Processes))
		if d.MemoryTotal == 0 || d.UUID == "" || d.Name == "" {
			t.Errorf("%s: incomplete reading %+v", d.Label(), d)
		}
	}
}

func TestSnapshot(t *testing.T) {
	f := newFakeNVML(t, 4)
	f.set(1, func(s *fakeState) {
		s.used = 30 * gib
		s.procs = []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 29 * gib}, {Pid: 4243, UsedGpuMemory: ^uint64(0)}}
		s.noPower = true
	})
	m := mustOpen(t, f, nil)
	if m.Count() != 4 {
		t.Fatalf("Count = %d, want 4", m.Count())
	}
	if got := m.DriverVersion(); got != "550.54.15" {
		t.Errorf("DriverVersion = %q", got)
	}
	devs, err := m.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if len(devs) != 4 {
		t.Fatalf("got %d devices, want 4", len(devs))
	}
	d := devs[1]
	if d.Index != 1 || d.Name != "NVIDIA H100 80GB HBM3" || d.UUID != uuidOf(1) {
		t.Errorf("identity = %d %q %q", d.Index, d.Name, d.UUID)
	}
	if d.MemoryTotal != 80*gib || d.MemoryUsed != 30*gib || d.MemoryFree != 50*gib {
		t.Errorf("memory = used %d total %d free %d", d.MemoryUsed, d.MemoryTotal, d.MemoryFree)
	}
	if d.Utilization != 0.37 || d.Temperature != 41 {
		t.Errorf("util %v temp %v", d.Utilization, d.Temperature)
	}
	if d.Has(FieldPower) || !d.Has(FieldECC) || !d.Has(FieldUtilization) {
		t.Errorf("missing = %b, want only power", d.Missing)
	}
	if devs[0].Power != 123.5 || !devs[0].Has(FieldPower) {
		t.Errorf("GPU 0 power = %v", devs[0].Power)
	}
	if got, want := FormatProcesses(d.Processes), "4242 (29.0 GiB), 4243"; got != want {
		t.Errorf("processes = %q, want %q", got, want)
	}
	if got := FormatProcesses(devs[0].Processes); got != "-" {
		t.Errorf("no processes = %q, want -", got)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := m.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Errorf("Snapshot after Close: %v, want ErrClosed", err)
	}
}
