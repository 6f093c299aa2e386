//go:build cgo

package gpu

import (
	"errors"
	"fmt"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/hashicorp/go-hclog"
)

// Open loads NVML (libnvidia-ml.so.1) and lists the GPUs. Without the
// library or the driver the error wraps ErrUnavailable and reads as one
// plain line, e.g. "NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA
// driver on this machine)".
func Open(logger hclog.Logger) (*Monitor, error) {
	return OpenLibrary(nvml.New(), logger)
}

// OpenLibrary is Open on a given NVML, such as go-nvml's mocks
// (github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100) in tests.
func OpenLibrary(lib nvml.Interface, logger hclog.Logger) (*Monitor, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, initError(ret)
	}
	b := &nvmlBackend{lib: lib}
	if err := b.load(); err != nil {
		_ = lib.Shutdown()
		return nil, err
	}
	return newMonitor(b, logger), nil
}

// initError turns nvml.Init's answer into one plain line.
func initError(ret nvml.Return) error {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("%w: libnvidia-ml.so.1 not found (no NVIDIA driver on this machine)", ErrUnavailable)
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return fmt.Errorf("%w: the NVIDIA kernel driver is not loaded (is nvidia.ko loaded? try nvidia-smi)", ErrUnavailable)
	case nvml.ERROR_NO_PERMISSION:
		return fmt.Errorf("%w: no permission to open /dev/nvidia* (run as root, or allow the devices in the systemd unit)", ErrUnavailable)
	default:
		return fmt.Errorf("%w: init: %s", ErrUnavailable, nvml.ErrorString(ret))
	}
}

// nvmlBackend adapts nvml.Interface to backend.
type nvmlBackend struct {
	lib     nvml.Interface
	handles []nvml.Device
	info    []gpuInfo
}

// load finds every GPU and its static facts.
func (b *nvmlBackend) load() error {
	n, ret := b.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("nvml: count GPUs: %w", ret)
	}
	for i := 0; i < n; i++ {
		h, ret := b.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("nvml: GPU %d: get handle: %w", i, ret)
		}
		name, ret := h.GetName()
		if ret != nvml.SUCCESS {
			return fmt.Errorf("nvml: GPU %d: get name: %w", i, ret)
		}
		uuid, ret := h.GetUUID()
		if ret != nvml.SUCCESS {
			return fmt.Errorf("nvml: GPU %d: get UUID: %w", i, ret)
		}
		b.handles = append(b.handles, h)
		b.info = append(b.info, gpuInfo{index: i, name: name, uuid: uuid})
	}
	return nil
}

func (b *nvmlBackend) gpus() []gpuInfo { return b.info }

func (b *nvmlBackend) driverVersion() string {
	v, ret := b.lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return ""
	}
	return v
}

func (b *nvmlBackend) read(index int) (Device, error) {
	g, h := b.info[index], b.handles[index]
	d := Device{Index: g.index, Name: g.name, UUID: g.uuid}
	mem, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return d, fmt.Errorf("read memory: %w", ret)
	}
	d.MemoryTotal, d.MemoryUsed, d.MemoryFree = mem.Total, mem.Used, mem.Free

	if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
		d.Utilization = float64(u.Gpu) / 100
	} else {
		d.Missing |= FieldUtilization
	}
	if t, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		d.Temperature = float64(t)
	} else {
		d.Missing |= FieldTemperature
	}
	if mw, ret := h.GetPowerUsage(); ret == nvml.SUCCESS {
		d.Power = float64(mw) / 1000
	} else {
		d.Missing |= FieldPower
	}
	if n, ret := h.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC); ret == nvml.SUCCESS {
		d.ECCUncorrected = n
	} else {
		d.Missing |= FieldECC
	}
	if _, _, pending, failed, ret := h.GetRemappedRows(); ret == nvml.SUCCESS {
		d.RemapPending, d.RemapFailed = pending, failed
	} else {
		d.Missing |= FieldRemap
	}
	ps, err := b.processes(index)
	if err != nil {
		return d, err
	}
	d.Processes = ps
	return d, nil
}

// notAvailable is NVML_VALUE_NOT_AVAILABLE as an unsigned long long.
const notAvailable = ^uint64(0)

func (b *nvmlBackend) processes(index int) ([]Process, error) {
	infos, ret := b.handles[index].GetComputeRunningProcesses()
	switch {
	case errors.Is(ret, nvml.ERROR_NOT_SUPPORTED):
		return nil, nil
	case ret != nvml.SUCCESS:
		return nil, fmt.Errorf("list compute processes: %w", ret)
	}
	ps := make([]Process, 0, len(infos))
	for _, pi := range infos {
		p := Process{PID: int(pi.Pid), UsedMemory: pi.UsedGpuMemory}
		if p.UsedMemory == notAvailable {
			p.UsedMemory = 0
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func (b *nvmlBackend) watchXID(stop <-chan struct{}, wait time.Duration, fn func(index int, xid uint64)) error {
	set, ret := b.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("create event set: %w", ret)
	}
	defer set.Free()
	registered := 0
	var lastErr error
	for i, h := range b.handles {
		if ret := h.RegisterEvents(nvml.EventTypeXidCriticalError, set); ret != nvml.SUCCESS {
			lastErr = fmt.Errorf("GPU %d: register XID events: %w", i, ret)
			continue
		}
		registered++
	}
	if registered == 0 {
		if lastErr == nil {
			return errors.New("no GPUs")
		}
		return lastErr
	}
	ms := uint32(wait / time.Millisecond)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		ev, ret := set.Wait(ms)
		switch {
		case ret == nvml.ERROR_TIMEOUT:
			continue
		case ret != nvml.SUCCESS:
			// A failed wait (e.g. a GPU fell off the bus) must not spin.
			select {
			case <-stop:
				return nil
			case <-time.After(wait):
			}
			continue
		case ev.EventType&nvml.EventTypeXidCriticalError == 0:
			continue
		}
		fn(b.indexOf(ev.Device), ev.EventData)
	}
}

// indexOf finds an event's GPU by UUID (handles may not compare equal).
func (b *nvmlBackend) indexOf(dev nvml.Device) int {
	if dev == nil {
		return -1
	}
	uuid, ret := dev.GetUUID()
	if ret == nvml.SUCCESS {
		for _, g := range b.info {
			if g.uuid == uuid {
				return g.index
			}
		}
	}
	if i, ret := dev.GetIndex(); ret == nvml.SUCCESS {
		return i
	}
	return -1
}

func (b *nvmlBackend) shutdown() error {
	if ret := b.lib.Shutdown(); ret != nvml.SUCCESS {
		return ret
	}
	return nil
}
