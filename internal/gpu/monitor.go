package gpu

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// gpuInfo is what does not change while NVML is loaded.
type gpuInfo struct {
	index int
	name  string
	uuid  string
}

// backend is what the Monitor needs from NVML. The cgo build adapts
// nvml.Interface to it (nvml_cgo.go).
type backend interface {
	// gpus lists every GPU NVML sees, in NVML index order.
	gpus() []gpuInfo
	// driverVersion is the NVIDIA driver's version, "" if unknown.
	driverVersion() string
	// read takes a reading of GPU index, processes included.
	read(index int) (Device, error)
	// processes lists the compute processes holding memory on GPU index.
	processes(index int) ([]Process, error)
	// watchXID delivers critical XID events to fn until stop is closed.
	// It returns an error only when it cannot watch at all.
	watchXID(stop <-chan struct{}, wait time.Duration, fn func(index int, xid uint64)) error
	// shutdown releases NVML.
	shutdown() error
}

// Monitor reads the GPUs through NVML. Its methods are safe for concurrent
// use. Open one per process, and Close it on the way out.
type Monitor struct {
	logger  hclog.Logger
	b       backend
	info    []gpuInfo
	xid     []atomic.Uint64
	lastXID []atomic.Uint64 // the code of the last critical XID per GPU (0: none)
	closing chan struct{}
	mu      sync.Mutex     // orders watcher starts against Close
	wg      sync.WaitGroup // watchers
	once    sync.Once
	closed  atomic.Bool

	// pollInterval is how often WaitReleased asks NVML (tests shorten it).
	pollInterval time.Duration
	// xidWait bounds one blocking wait for an XID event, hence how fast a
	// watcher notices it should stop.
	xidWait time.Duration
}

func newMonitor(b backend, logger hclog.Logger) *Monitor {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	info := b.gpus()
	return &Monitor{
		logger:       logger,
		b:            b,
		info:         info,
		xid:          make([]atomic.Uint64, len(info)),
		lastXID:      make([]atomic.Uint64, len(info)),
		closing:      make(chan struct{}),
		pollInterval: 500 * time.Millisecond,
		xidWait:      time.Second,
	}
}

// Count is the number of GPUs NVML sees.
func (m *Monitor) Count() int { return len(m.info) }

// DriverVersion is the NVIDIA driver's version, "" when NVML cannot say.
func (m *Monitor) DriverVersion() string { return m.b.driverVersion() }

// XIDErrors is the number of critical XID events seen on GPU index since
// Open (0 for an unknown index).
func (m *Monitor) XIDErrors(index int) uint64 {
	if index < 0 || index >= len(m.xid) {
		return 0
	}
	return m.xid[index].Load()
}

// Snapshot reads every GPU. When some GPUs cannot be read it returns the
// others and an error naming the failures.
func (m *Monitor) Snapshot() ([]Device, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	devs := make([]Device, 0, len(m.info))
	var errs []error
	for _, g := range m.info {
		d, err := m.read(g.index)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		devs = append(devs, d)
	}
	return devs, errors.Join(errs...)
}

// read takes one GPU's reading and adds what the Monitor itself counts.
func (m *Monitor) read(index int) (Device, error) {
	d, err := m.b.read(index)
	if err != nil {
		g := m.info[index]
		return Device{}, fmt.Errorf("%s: %w", label(g.index, g.name, g.uuid), err)
	}
	d.XIDErrors, d.LastXID = m.xid[index].Load(), m.lastXID[index].Load()
	return d, nil
}

// Close stops the XID watchers, waits for them, and releases NVML. It is
// safe to call more than once.
func (m *Monitor) Close() error {
	var err error
	m.once.Do(func() {
		m.mu.Lock()
		m.closed.Store(true)
		close(m.closing)
		m.mu.Unlock()
		m.wg.Wait()
		if e := m.b.shutdown(); e != nil {
			err = fmt.Errorf("nvml shutdown: %w", e)
		}
	})
	return err
}
