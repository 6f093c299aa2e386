// Package config loads and validates glmctl's HCL configuration (DESIGN.md
// "Config contract"). Every block is optional; Load fills in the defaults and
// reports every problem at once, each prefixed with file:line:col.
package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// DefaultPath is used when neither -c nor GLMCTL_CONFIG names a file.
const DefaultPath = "/etc/glmctl/glmctl.hcl"

// Config is a fully decoded, defaulted and validated configuration.
type Config struct {
	// SHA256 is the hex SHA-256 of the source the config was parsed from.
	SHA256 string
	// Path is the file the config was read from ("" for an embedded one).
	Path string

	Log      Log
	Control  Control
	Metrics  *Metrics // nil: no metrics listener
	Console  *Console // nil: no web console
	GPU      *GPU     // nil: no GPU checks
	Programs []*Program
	Guard    *Guard  // nil: no guard listener
	Audit    *Audit  // nil: no audit trail
	Policy   *Policy // nil: no request policy

	// Warnings are things that work but are probably not what was meant
	// (glmctl check prints them); they never stop a config from loading.
	Warnings Problems

	// filename and places say where each block and attribute is written
	// (see At).
	filename string
	places   map[string]hcl.Pos
}

// At returns a problem about the setting at path, placed where the file
// writes it. path is dotted: block types, block names and the attribute,
// as in "guard.tls.cert", "program.vllm.user" or "audit.path". A setting
// the file leaves at its default is placed at its enclosing block, and
// failing that at the file; the message should then say which setting.
func (c *Config) At(path, format string, args ...any) Problem {
	p := Problem{Filename: c.filename, Message: fmt.Sprintf(format, args...)}
	if p.Filename == "" {
		p.Filename = c.Path
	}
	for {
		if at, ok := c.places[path]; ok {
			p.Line, p.Column = at.Line, at.Column
			return p
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return p
		}
		path = path[:i]
	}
}

// Log configures glmctl's own log.
type Log struct {
	Level  string // trace | debug | info | warn | error (default info)
	Format string // text | json (default text)
}

// Control configures the control socket the CLI talks to.
type Control struct {
	Socket string // default /run/glmctl/glmctl.sock
}

// Console configures the web console (internal/console).
type Console struct {
	Listen string // default 127.0.0.1:9402
}

// Metrics configures the Prometheus listener.
type Metrics struct {
	Listen          string // default 127.0.0.1:9400
	BearerTokenFile string
}

// GPU configures the NVML preflight and watch.
type GPU struct {
	Required      bool  // default true
	Count         int   // default 0 = do not check the count
	MinFreeMemory int64 // bytes, default 0
	// ReleaseTimeout bounds the wait for a stopped program's PIDs to leave the
	// GPUs before it is started again (default 2m).
	ReleaseTimeout time.Duration
	// RestartOnXID restarts the programs using a GPU when NVML reports a
	// critical XID event on it (default false: log and count only).
	RestartOnXID bool
}

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Program is one supervised process.
type Program struct {
	Name         string
	Command      []string
	Directory    string
	User         string
	Env          map[string]string
	GPUs         []int
	Restart      string        // always (default) | on-failure | never
	StartSecs    time.Duration // default 1s
	StartRetries int           // default 5
	StartTimeout time.Duration // default 30m (readiness window when a probe is set)
	StopSignal   string        // default SIGTERM (names like "SIGTERM" or "TERM")
	StopTimeout  time.Duration // default 10s
	Backoff      Backoff
	Health       *Health // nil: no probe
	Log          ProgramLog
	DependsOn    []string
	Autostart    bool // default true
}

// Backoff is the restart delay policy.
type Backoff struct {
	Initial time.Duration // default 1s
	Max     time.Duration // default 5m
}

// Health is a readiness and liveness probe; exactly one of HTTP, TCP, Exec is set.
type Health struct {
	HTTP       string
	UnixSocket string // dial this socket for HTTP probes
	TCP        string
	Exec       []string
	Interval   time.Duration // default 10s
	Timeout    time.Duration // default 5s
	Failures   int           // default 3
}

// ProgramLog is where a program's output goes.
type ProgramLog struct {
	Path    string // "" = no file, only glmctl's log and the in-memory tail
	MaxSize int64  // bytes, default 100MiB
	Keep    int    // default 10
}

// Guard configures the authenticating, throttling proxy.
type Guard struct {
	Listen              string // default 127.0.0.1:8000
	Upstream            string // required: unix:///path or http://127.0.0.1:port
	AllowRemoteUpstream bool
	Program             string // gate on this program being RUNNING; "" = no gating
	KeysFile            string
	LimitsFile          string
	// LimitsStore is "" (in-process) or a Redis URL (redis://, rediss://,
	// unix://; Sentinel and Cluster forms as go-redis parses them): the
	// limits are then shared by every guard that names the same Redis.
	LimitsStore string
	// LimitsStorePasswordFile holds the Redis password; LimitsStoreCAFile
	// the CA of a rediss:// server; LimitsStoreCertFile and
	// LimitsStoreKeyFile a client certificate for a server that asks for
	// one (both or neither).
	LimitsStorePasswordFile string
	LimitsStoreCAFile       string
	LimitsStoreCertFile     string
	LimitsStoreKeyFile      string
	// LimitsStoreFailure is what happens while Redis is unreachable:
	// "closed" (default: 503 + Retry-After) or "open" (this box's own
	// in-process limits).
	LimitsStoreFailure string
	MaxBody            int64 // bytes, default 4MiB
	DefaultMaxTokens   int   // default 1024
	// MaxModelLen caps max_tokens (and n × max_tokens) in requests: more is
	// a 400. Default: the guard program's --max-model-len, else 1,048,576.
	MaxModelLen    int
	TrustedProxies []string
	DrainTimeout   time.Duration // default 30s

	// Connection handling (DESIGN.md "Wire behaviour"; README "Limits and
	// timeouts").
	MaxConnections int // open client connections; 0 = default (4096, lowered to fit RLIMIT_NOFILE)
	// MaxUnauthenticatedPerClient caps the connections one client address
	// holds before any request on them has authenticated (default 256).
	MaxUnauthenticatedPerClient int
	HeaderTimeout               time.Duration // request line + headers (default 10s)
	BodyTimeout                 time.Duration // whole request body after the headers (default 30s)
	IdleTimeout                 time.Duration // keep-alive wait for the next request (default 60s)
	// UpstreamHeaderTimeout bounds the wait for the model server's answer
	// headers (default 5m: a non-stream answer sends them only once the
	// whole completion is done); past it the request gets 504 and the
	// upstream counts as hung for a few seconds (new requests: 503).
	UpstreamHeaderTimeout time.Duration
	Global                *GlobalLimits // nil: no global limit
	TLS                   *TLS
}

// GlobalLimits apply to all requests together.
type GlobalLimits struct {
	RPM         int // 0 = unlimited
	Concurrency int // 0 = unlimited
}

// TLS holds certificate files for the guard listener.
type TLS struct {
	Cert string
	Key  string
}

// Audit configures the audit trail.
type Audit struct {
	Path        string // default /var/log/glmctl/audit.log
	OnError     string // reject (default) | continue
	Fsync       string // always | interval (default) | never
	Level       string // metadata (default) | request | request_response
	HMACKeyFile string
	Rotate      Rotate
}

// Rotate configures built-in audit log rotation.
type Rotate struct {
	MaxSize  int64 // bytes, default 100MiB; 0 = no size rotation
	Daily    bool  // default false
	Keep     int   // default 30
	Compress bool  // default true
}

// Policy is the request policy (the policy block): caps on what a request
// may ask for and named rules on its prompt, enforced by the guard. A key's
// "policy" object in the keys file can only tighten it.
type Policy struct {
	// MaxPromptTokens caps the guard's prompt estimate (prompt bytes ÷ 4);
	// 0 = no cap.
	MaxPromptTokens int
	// MaxTokens caps max_tokens (per choice) on the generating routes; a
	// request that names no bound gets this one. 0 = no cap.
	MaxTokens int
	// DenyParams are top-level request parameters a request may not turn
	// on (any value but absent, null, false, [] or {}; for n and best_of,
	// anything but 1).
	DenyParams []string
	Rules      []*PolicyRule // in file order
}

// Policy rule actions.
const (
	PolicyReject = "reject" // 400 naming the rule
	PolicyFlag   = "flag"   // served, marked in the audit record
)

// Names of the policy's built-in checks, as audit records and metrics name
// them; rule blocks may not take them.
const (
	PolicyMaxPromptTokens = "max_prompt_tokens"
	PolicyMaxTokens       = "max_tokens"
	PolicyDenyParams      = "deny_params"
	// PolicyUnreadable: a prompt the rules cannot read (token IDs, prompt
	// embeddings, a body that does not parse).
	PolicyUnreadable = "unreadable"
)

// PolicyRule is one named rule on the prompt: it matches when any of its
// literals or its pattern matches the prompt's text (NFKC-normalised).
type PolicyRule struct {
	Name    string
	Pattern string   // RE2 syntax, "" = none; case-sensitive unless it says (?i)
	Literal []string // case-insensitive
	Action  string   // reject | flag
	// At is where the rule is written ("FILE:LINE:COL" of its pattern, or
	// of the rule block when it has none), for the errors only compiling
	// the rules finds (an automaton too large, a pattern that normalises
	// to nothing). "" for rules not read from a file.
	At string
}

// Program returns the program named name, or nil.
func (c *Config) Program(name string) *Program {
	for _, p := range c.Programs {
		if p.Name == name {
			return p
		}
	}
	return nil
}
