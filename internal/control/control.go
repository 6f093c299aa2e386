// Package control is the daemon's control socket: a small JSON-over-HTTP API on
// a unix socket (mode 0600) that the glmctl CLI talks to. The daemon opens it
// before starting any program, so status and stop work during a long model load.
//
// Routes (all JSON):
//
//	GET  /v1/status?name=a&name=b      -> StatusReply
//	POST /v1/programs/{start,stop,restart}  ProgramsRequest -> ActionReply
//	GET  /v1/logs?name=x&n=100[&follow=1]  -> text lines (streamed when follow)
//	POST /v1/reload                     -> ActionReply
//	POST /v1/audit/reopen               -> ActionReply
//
// Errors are {"error": "..."} with a 4xx/5xx status.
package control

import (
	"context"
	"errors"
	"time"
)

// ProgramStatus is one program's line of `glmctl status`. The JSON names are
// part of the product contract (DESIGN.md, `status --json`).
type ProgramStatus struct {
	Name          string `json:"name"`
	State         string `json:"state"`
	PID           int    `json:"pid"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Restarts      int    `json:"restarts"`
	Health        string `json:"health"`
	LastExit      *int   `json:"last_exit"`
	Message       string `json:"message"`
}

// GPUStatus is one GPU as NVML reports it.
type GPUStatus struct {
	Index            int    `json:"index"`
	Name             string `json:"name"`
	UUID             string `json:"uuid"`
	MemoryUsedBytes  uint64 `json:"memory_used_bytes"`
	MemoryTotalBytes uint64 `json:"memory_total_bytes"`
}

// GuardStatus summarises the guard listener.
type GuardStatus struct {
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	// Ready: the model behind the guard is ready (requests are forwarded).
	Ready bool `json:"ready"`
	// FilesOK: every keys, limits and certificate file was loaded by its
	// last attempt; false: an older version stays in force (see Files).
	FilesOK         bool         `json:"files_ok"`
	Files           []FileStatus `json:"files"`
	MaxConnections  int          `json:"max_connections"`
	OpenConnections int          `json:"open_connections"`
	// LimitsStore is "in-process" or the Redis URL (without password);
	// LimitsStoreUp whether it answers (always true in-process).
	LimitsStore   string `json:"limits_store"`
	LimitsStoreUp bool   `json:"limits_store_up"`
	// PolicyRules is the number of request policy rules in force (-1: no
	// policy block); the policy reloads with the config (Config.LoadedAt).
	PolicyRules int `json:"policy_rules"`
}

// FileStatus is one file the guard loads (keys, limits, TLS certificate).
type FileStatus struct {
	Path     string    `json:"path"`
	SHA256   string    `json:"sha256,omitempty"`
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	Error    string    `json:"error,omitempty"`
	ErrorAt  time.Time `json:"error_at,omitzero"`
	Entries  int       `json:"entries"`
}

// ConfigStatus is the configuration in force.
type ConfigStatus struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// LoadedAt is when the configuration in force was loaded (start or
	// last successful reload).
	LoadedAt time.Time `json:"loaded_at"`
	// LastReloadError is the first error of the last rejected reload,
	// when it came after the last successful one.
	LastReloadError   string    `json:"last_reload_error,omitempty"`
	LastReloadErrorAt time.Time `json:"last_reload_error_at,omitzero"`
}

// StatusReply is the whole `glmctl status --json` object.
type StatusReply struct {
	Programs []ProgramStatus `json:"programs"`
	GPUs     []GPUStatus     `json:"gpus"`
	// GPUMessage says why GPUs is empty (no NVML, built without NVML…).
	GPUMessage string        `json:"gpu_message,omitempty"`
	Guard      *GuardStatus  `json:"guard"`
	Config     *ConfigStatus `json:"config,omitempty"`
}

// ProgramsRequest names the programs an action applies to; "all" means every one.
type ProgramsRequest struct {
	Names []string `json:"names"`
	// Wait makes the call return only once the state is reached.
	Wait bool `json:"wait"`
}

// ActionReply reports the outcome of an action.
type ActionReply struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// Backend is what the daemon exposes through the socket.
type Backend interface {
	// Status reports the named programs (all when names is empty).
	Status(names ...string) (*StatusReply, error)
	// Start, Stop and Restart act on programs; with wait they return once
	// the target state is reached (or failed).
	Start(ctx context.Context, wait bool, names ...string) error
	Stop(ctx context.Context, wait bool, names ...string) error
	Restart(ctx context.Context, wait bool, names ...string) error
	// Tail returns the last n captured lines of a program's output.
	Tail(name string, n int) ([]string, error)
	// Follow streams new output lines until ctx is done.
	Follow(ctx context.Context, name string) (<-chan string, error)
	// Reload re-reads the configuration.
	Reload(ctx context.Context) error
	// AuditReopen reopens the audit log (after an external logrotate).
	AuditReopen() error
}

// ErrUnreachable means no daemon answered on the socket.
var ErrUnreachable = errors.New("glmctl daemon unreachable")

// ErrNotFound is returned by a Backend for an unknown program name; the
// server maps it to 404.
var ErrNotFound = errors.New("no such program")

// maxWait bounds how long a waiting action may run on the server side.
const maxWait = 2 * time.Hour
