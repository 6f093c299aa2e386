//go:build cgo

package gpu

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/hashicorp/go-hclog"
)

const gib = 1 << 30

// fakeState is what the fake NVML reports for one GPU; tests change it
// under fakeNVML.mu while a Monitor reads it.
type fakeState struct {
	used    uint64
	util    uint32
	temp    uint32
	powerMW uint32
	ecc     uint64
	pending bool
	procs   []nvml.ProcessInfo
	noPower bool // GetPowerUsage answers ERROR_NOT_SUPPORTED
}

// fakeNVML is go-nvml's dgxh100 mock with the methods glmctl calls wired
// to fakeState, fixed UUIDs, and an event channel for XID events.
type fakeNVML struct {
	srv    *server.Server
	mu     sync.Mutex
	state  []fakeState
	events chan nvml.EventData
	// procCalls counts GetComputeRunningProcesses calls (under mu).
	procCalls int
	// procFilter, when set, decides at each query whether a listed process
	// still holds memory (used to tie fake holders to real processes).
	procFilter func(pid int) bool
}

func newFakeNVML(t testing.TB, n int) *fakeNVML {
	t.Helper()
	f := &fakeNVML{
		srv:    dgxh100.NewWithGPUs(gpus.Multiple(n, gpus.H100_SXM5_80GB)...),
		state:  make([]fakeState, n),
		events: make(chan nvml.EventData, 16),
	}
	for i, d := range f.srv.Devices {
		dev := d.(*server.Device)
		dev.UUID = fmt.Sprintf("GPU-00000000-0000-0000-0000-%012d", i)
		f.state[i] = fakeState{used: 1 * gib, util: 37, temp: 41, powerMW: 123500}
		f.wire(i, dev)
	}
	f.srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				select {
				case ev := <-f.events:
					return ev, nvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	return f
}

func (f *fakeNVML) wire(i int, dev *server.Device) {
	total := dev.MemoryInfo.Total
	dev.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		f.mu.Lock()
		defer f.mu.Unlock()
		u := f.state[i].used
		return nvml.Memory{Total: total, Used: u, Free: total - u}, nvml.SUCCESS
	}
	dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return nvml.Utilization{Gpu: f.state[i].util, Memory: 10}, nvml.SUCCESS
	}
	dev.GetTemperatureFunc = func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
		if s != nvml.TEMPERATURE_GPU {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.state[i].temp, nvml.SUCCESS
	}
	dev.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.state[i].noPower {
			return 0, nvml.ERROR_NOT_SUPPORTED
		}
		return f.state[i].powerMW, nvml.SUCCESS
	}
	dev.GetTotalEccErrorsFunc = func(et nvml.MemoryErrorType, ct nvml.EccCounterType) (uint64, nvml.Return) {
		if et != nvml.MEMORY_ERROR_TYPE_UNCORRECTED || ct != nvml.VOLATILE_ECC {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.state[i].ecc, nvml.SUCCESS
	}
	dev.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return 0, 0, f.state[i].pending, false, nvml.SUCCESS
	}
	dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.procCalls++
		var out []nvml.ProcessInfo
		for _, p := range f.state[i].procs {
			if f.procFilter == nil || f.procFilter(int(p.Pid)) {
				out = append(out, p)
			}
		}
		return out, nvml.SUCCESS
	}
	dev.RegisterEventsFunc = func(types uint64, _ nvml.EventSet) nvml.Return {
		if types&nvml.EventTypeXidCriticalError == 0 {
			return nvml.ERROR_INVALID_ARGUMENT
		}
		return nvml.SUCCESS
	}
}

// set changes GPU i's state under the lock.
func (f *fakeNVML) set(i int, change func(s *fakeState)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.state[i])
}

func (f *fakeNVML) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procCalls
}

// mustOpen opens a Monitor on f and closes it at the end of the test.
func mustOpen(t testing.TB, f *fakeNVML, logger hclog.Logger) *Monitor {
	t.Helper()
	m, err := OpenLibrary(f.srv, logger)
	if err != nil {
		t.Fatalf("OpenLibrary: %v", err)
	}
	m.pollInterval = 5 * time.Millisecond
	m.xidWait = 20 * time.Millisecond
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// uuidOf is the fake's UUID for GPU i.
func uuidOf(i int) string { return fmt.Sprintf("GPU-00000000-0000-0000-0000-%012d", i) }
