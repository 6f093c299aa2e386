// Package gpu checks and watches the NVIDIA GPUs through NVML
// (github.com/NVIDIA/go-nvml): a preflight before a GPU program starts, a
// wait until a stopped program's processes have left GPU memory, a watcher
// for critical XID events, and a Prometheus collector.
//
// NVML needs cgo. A binary built with CGO_ENABLED=0 still has this package,
// but Open returns an error saying it was built without NVML. Where
// libnvidia-ml.so.1 is missing (every build and CI machine) Open returns an
// error wrapping ErrUnavailable with one plain line saying so; nothing
// crashes.
//
// The NVML-free core (this file's siblings without build tags) talks to a
// small internal backend; the cgo file adapts nvml.Interface to it, so tests
// drive the real adapter with go-nvml's dgxh100 mock.
package gpu

import "errors"

// ErrUnavailable is wrapped by every error saying NVML cannot be used: the
// library is missing, the driver is not loaded, or the binary was built
// without cgo.
var ErrUnavailable = errors.New("NVML unavailable")

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("gpu monitor closed")
