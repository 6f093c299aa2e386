package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Defaults (DESIGN.md "Config contract"; where it is silent, what a careful
// operator would pick). docs/CONFIG.md lists them all.
const (
	DefaultControlSocket = "/run/glmctl/glmctl.sock"
	DefaultMetricsListen = "127.0.0.1:9400"
	DefaultConsoleListen = "127.0.0.1:9402"
	DefaultGuardListen   = "127.0.0.1:8000"
	DefaultKeysFile      = "/etc/glmctl/api_keys.json"
	DefaultAuditPath     = "/var/log/glmctl/audit.log"
	DefaultMaxBody       = 4 << 20
	DefaultMaxTokens     = 1024
	DefaultDrainTimeout  = 30 * time.Second
	// DefaultMaxConnections is the guard's cap on open client connections
	// (lowered at start to fit RLIMIT_NOFILE when not set explicitly).
	DefaultMaxConnections = 4096
	// DefaultMaxUnauthPerClient caps one address's connections that have
	// not authenticated yet.
	DefaultMaxUnauthPerClient = 256
	DefaultHeaderTimeout      = 10 * time.Second
	DefaultBodyTimeout        = 30 * time.Second
	DefaultIdleTimeout        = 60 * time.Second
	// DefaultUpstreamHeaderTimeout bounds the wait for the model's answer.
	DefaultUpstreamHeaderTimeout = 5 * time.Minute
	// DefaultMaxModelLen caps max_tokens when the guard's program names no
	// --max-model-len.
	DefaultMaxModelLen    = 1 << 20
	DefaultReleaseTimeout = 2 * time.Minute
	DefaultStartSecs      = time.Second
	DefaultStartRetries   = 5
	DefaultStartTimeout   = 30 * time.Minute
	DefaultStopSignal     = "SIGTERM"
	DefaultStopTimeout    = 10 * time.Second
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = 5 * time.Second
	DefaultHealthFailures = 3
	DefaultLogMaxSize     = 100 << 20
	DefaultLogKeep        = 10
	DefaultAuditMaxSize   = 100 << 20
	DefaultAuditKeep      = 30
)

// owners maps each attribute name of a top-level block to the blocks that
// take it, so a stray top-level attribute gets a "move it into" hint.
func owners() map[string][]string {
	return map[string][]string{
		"level": {"log", "audit"}, "format": {"log"}, "socket": {"control"},
		"listen": {"guard", "metrics"}, "bearer_token_file": {"metrics"},
		"required": {"gpu"}, "count": {"gpu"}, "min_free_memory": {"gpu"}, "release_timeout": {"gpu"},
		"command": {"program \"NAME\""}, "upstream": {"guard"}, "keys_file": {"guard"},
		"limits_file": {"guard"}, "path": {"audit"}, "on_error": {"audit"}, "fsync": {"audit"},
		"restart_on_xid": {"gpu"},
	}
}

// progMeta keeps source positions of a program for the cross checks.
type progMeta struct {
	label     hcl.Range
	depends   []hcl.Range // one per DependsOn entry
	gpus      []hcl.Range // one per GPUs entry
	gpusFound bool
	health    hcl.Range // the health block's type name
}

// decoder turns a parsed body into a Config, recording positions needed
// by the checks that span blocks.
type decoder struct {
	c            *collector
	warn         *collector
	progs        map[*Program]*progMeta
	guardBlock   hcl.Range
	guardProgram hcl.Range
	guardListen  hcl.Range
	// guardUpstream and metricsListen are where those attributes are.
	guardUpstream hcl.Range
	metricsListen hcl.Range
	consoleListen hcl.Range
	policyBlock   hcl.Range
	gpuCount      hcl.Range
}

func (d *decoder) decode(top *section) *Config {
	cfg := &Config{
		Log:     Log{Level: "info", Format: "text"},
		Control: Control{Socket: DefaultControlSocket},
	}
	if b := top.block("log"); b != nil {
		s := top.child(b, "log")
		s.enum("level", &cfg.Log.Level, "trace", "debug", "info", "warn", "error")
		s.enum("format", &cfg.Log.Format, "text", "json")
		s.finish(nil)
	}
	if b := top.block("control"); b != nil {
		s := top.child(b, "control")
		if s.file("socket", "/run/glmctl", &cfg.Control.Socket) {
			rng := b.Body.Attributes["socket"].Expr.Range()
			switch n := len(cfg.Control.Socket); {
			case n == 0:
				s.c.at(rng, "control socket must not be empty: write socket = %q", DefaultControlSocket)
			case n >= maxSocketPath:
				// Linux's sockaddr_un holds 107 bytes and a NUL: a longer
				// path cannot be bound, or dialled by glmctl status.
				s.c.at(rng, "control socket path is %d bytes, and a unix socket path must be shorter than %d: choose a shorter one such as %q", n, maxSocketPath, DefaultControlSocket)
			}
		}
		s.finish(nil)
	}
	if b := top.block("console"); b != nil {
		s := top.child(b, "console")
		cfg.Console = &Console{Listen: DefaultConsoleListen}
		if s.str("listen", &cfg.Console.Listen) {
			checkListen(s, "listen", cfg.Console.Listen)
			d.consoleListen = s.body.Attributes["listen"].Expr.Range()
		} else {
			d.consoleListen = b.TypeRange
		}
		s.finish(nil)
	}
	if b := top.block("metrics"); b != nil {
		d.metricsListen = b.TypeRange // the default listen's place, unless written
		cfg.Metrics = d.metrics(top.child(b, "metrics"))
	}
	if b := top.block("gpu"); b != nil {
		cfg.GPU = d.gpu(top.child(b, "gpu"))
	}
	d.progs = map[*Program]*progMeta{}
	seen := map[string]hcl.Range{}
	for _, b := range top.labelled("program") {
		name, rng := b.Labels[0], b.LabelRanges[0]
		if first, dup := seen[name]; dup {
			d.c.at(rng, "duplicate program %q: the first is at %s; rename or remove one of them", name, pos(d.c.filename, first))
			continue
		}
		seen[name] = rng
		if msg := checkProgramName(name); msg != "" {
			d.c.at(rng, "%s", msg)
		}
		p, meta := d.program(top.child(b, fmt.Sprintf("program %q", name)), b, name)
		meta.label = rng
		d.progs[p] = meta
		cfg.Programs = append(cfg.Programs, p)
	}
	if b := top.block("guard"); b != nil {
		d.guardBlock = b.TypeRange
		if a, ok := b.Body.Attributes["listen"]; ok {
			d.guardListen = a.Expr.Range()
		}
		cfg.Guard = d.guard(top.child(b, "guard"), b)
	}
	if b := top.block("audit"); b != nil {
		cfg.Audit = d.audit(top.child(b, "audit"))
	}
	cfg.Policy = d.policy(top)
	top.finish(owners())
	return cfg
}

// programName is what a program may be called: it appears in CLI arguments,
// log names and metric labels.
func checkProgramName(name string) string {
	if name == "all" {
		return `program name "all" is reserved (glmctl start all means every program): choose another name`
	}
	if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`).MatchString(name) {
		return fmt.Sprintf("invalid program name %q: use letters, digits, \".\", \"_\" and \"-\", starting with a letter or digit", name)
	}
	return ""
}

func (d *decoder) metrics(s *section) *Metrics {
	m := &Metrics{Listen: DefaultMetricsListen}
	if s.str("listen", &m.Listen) {
		checkListen(s, "listen", m.Listen)
		d.metricsListen = s.body.Attributes["listen"].Expr.Range()
	}
	s.file("bearer_token_file", "/etc/glmctl", &m.BearerTokenFile)
	s.finish(nil)
	return m
}

func (d *decoder) gpu(s *section) *GPU {
	g := &GPU{Required: true, ReleaseTimeout: DefaultReleaseTimeout}
	s.boolean("required", &g.Required)
	s.integer("count", &g.Count, 0)
	if a, ok := s.body.Attributes["count"]; ok {
		d.gpuCount = a.Expr.Range()
	}
	s.size("min_free_memory", &g.MinFreeMemory)
	s.duration("release_timeout", &g.ReleaseTimeout, true)
	s.boolean("restart_on_xid", &g.RestartOnXID)
	s.finish(nil)
	return g
}

func (d *decoder) program(s *section, b *hclsyntax.Block, name string) (*Program, *progMeta) {
	meta := &progMeta{}
	p := &Program{
		Name:         name,
		Restart:      RestartAlways,
		StartSecs:    DefaultStartSecs,
		StartRetries: DefaultStartRetries,
		StartTimeout: DefaultStartTimeout,
		StopSignal:   DefaultStopSignal,
		StopTimeout:  DefaultStopTimeout,
		Backoff:      Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax},
		Log:          ProgramLog{MaxSize: DefaultLogMaxSize, Keep: DefaultLogKeep},
		Autostart:    true,
	}
	if _, ok := s.strList("command", &p.Command); ok {
		switch {
		case len(p.Command) == 0:
			s.c.at(b.Body.Attributes["command"].Expr.Range(), "command must not be empty: write command = [\"/path/to/executable\", \"arg\"]")
		case p.Command[0] == "":
			s.c.at(elemRange(b.Body.Attributes["command"].Expr, 0), "the first element of command is the executable and must not be empty")
		}
	} else if s.missing("command") {
		s.c.at(b.TypeRange, "program %q needs a command: write command = [\"/path/to/executable\", \"arg\"]", name)
	}
	s.file("directory", "/srv", &p.Directory)
	s.str("user", &p.User)
	s.strMap("env", &p.Env)
	if ranges, ok := s.intList("gpus", &p.GPUs); ok {
		meta.gpus, meta.gpusFound = ranges, true
		firstAt := map[int]bool{}
		for i, g := range p.GPUs {
			switch {
			case g < 0:
				s.c.at(ranges[i], "gpus index %d is negative: GPU indices start at 0", g)
			case firstAt[g]:
				s.c.at(ranges[i], "gpus lists GPU %d twice: list each GPU once", g)
			}
			firstAt[g] = true
		}
	}
	s.enum("restart", &p.Restart, RestartAlways, RestartOnFailure, RestartNever)
	s.duration("start_secs", &p.StartSecs, true)
	s.integer("start_retries", &p.StartRetries, 0)
	s.duration("start_timeout", &p.StartTimeout, false)
	var sig string
	if s.str("stop_signal", &sig) {
		if c, ok := canonicalSignal(sig); ok {
			p.StopSignal = c
		} else {
			s.c.at(b.Body.Attributes["stop_signal"].Expr.Range(), "invalid stop_signal %q: write a signal name such as %s", sig, quoteList(signalNames()))
		}
	}
	s.duration("stop_timeout", &p.StopTimeout, false)
	if bb := s.block("backoff"); bb != nil {
		bs := s.child(bb, s.where+" backoff")
		bs.duration("initial", &p.Backoff.Initial, true) // 0: restart at once (supervisord's behaviour after RUNNING)
		bs.duration("max", &p.Backoff.Max, false)
		bs.finish(nil)
		if p.Backoff.Initial > p.Backoff.Max {
			rng := bb.TypeRange
			if a, ok := bb.Body.Attributes["initial"]; ok {
				rng = a.Expr.Range()
			}
			s.c.at(rng, "backoff initial %s is longer than max %s: make initial at most max", p.Backoff.Initial, p.Backoff.Max)
		}
	}
	if hb := s.block("health"); hb != nil {
		p.Health = d.health(s.child(hb, s.where+" health"), hb)
		meta.health = hb.TypeRange
	}
	if lb := s.block("log"); lb != nil {
		ls := s.child(lb, s.where+" log")
		ls.file("path", "/var/log/glmctl", &p.Log.Path)
		ls.size("max_size", &p.Log.MaxSize)
		ls.integer("keep", &p.Log.Keep, 1)
		if p.Log.Path == "" {
			for _, name := range []string{"max_size", "keep"} {
				if a, ok := lb.Body.Attributes[name]; ok && !s.c.hasProblemAt(a.Expr.Range().Start) {
					s.c.at(a.Expr.Range(), "log %s has no effect without a log path (the output then goes to glmctl's own log, and its last lines to glmctl logs %s): add path = %q or remove %s", name, p.Name, "/var/log/glmctl/"+p.Name+".log", name)
				}
			}
		}
		ls.finish(nil)
	}
	if ranges, ok := s.strList("depends_on", &p.DependsOn); ok {
		meta.depends = ranges
	}
	s.boolean("autostart", &p.Autostart)
	s.finish(nil)
	return p, meta
}

func (d *decoder) health(s *section, b *hclsyntax.Block) *Health {
	h := &Health{Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Failures: DefaultHealthFailures}
	var kinds []string
	if s.str("http", &h.HTTP) {
		kinds = append(kinds, "http")
		if u, err := url.Parse(h.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			s.c.at(b.Body.Attributes["http"].Expr.Range(), "invalid http probe %q: write a URL such as \"http://127.0.0.1:8000/health\"", h.HTTP)
		}
	}
	if s.file("unix_socket", "/run/glmctl", &h.UnixSocket) && h.HTTP == "" {
		s.c.at(b.Body.Attributes["unix_socket"].Expr.Range(), "unix_socket is only used by http probes: add http = \"http://localhost/health\" or remove unix_socket")
	}
	if s.str("tcp", &h.TCP) {
		kinds = append(kinds, "tcp")
		if host, port, err := net.SplitHostPort(h.TCP); err != nil || host == "" || !validPort(port, false) {
			s.c.at(b.Body.Attributes["tcp"].Expr.Range(), "invalid tcp probe %q: write host:port such as \"127.0.0.1:7860\"", h.TCP)
		}
	}
	if rngs, ok := s.strList("exec", &h.Exec); ok {
		kinds = append(kinds, "exec")
		if len(h.Exec) == 0 || h.Exec[0] == "" {
			rng := b.Body.Attributes["exec"].Expr.Range()
			if len(rngs) > 0 {
				rng = rngs[0]
			}
			s.c.at(rng, "exec probe needs a command: write exec = [\"/path/to/check\", \"arg\"]")
		}
	}
	switch {
	case len(kinds) == 0 && !anyPresent(b, "http", "tcp", "exec"):
		s.c.at(b.TypeRange, "health needs exactly one of http, tcp or exec: add e.g. http = \"http://127.0.0.1:8000/health\"")
	case len(kinds) > 1:
		s.c.at(b.TypeRange, "health has %s: keep exactly one of http, tcp or exec", strings.Join(kinds, " and "))
	}
	s.duration("interval", &h.Interval, false)
	s.duration("timeout", &h.Timeout, false)
	s.integer("failures", &h.Failures, 1)
	s.finish(nil)
	return h
}

func anyPresent(b *hclsyntax.Block, names ...string) bool {
	for _, n := range names {
		if _, ok := b.Body.Attributes[n]; ok {
			return true
		}
	}
	return false
}

func (d *decoder) guard(s *section, b *hclsyntax.Block) *Guard {
	g := &Guard{
		Listen:           DefaultGuardListen,
		KeysFile:         DefaultKeysFile,
		MaxBody:          DefaultMaxBody,
		DefaultMaxTokens: DefaultMaxTokens,
		DrainTimeout:     DefaultDrainTimeout,

		MaxUnauthenticatedPerClient: DefaultMaxUnauthPerClient,
		HeaderTimeout:               DefaultHeaderTimeout,
		BodyTimeout:                 DefaultBodyTimeout,
		IdleTimeout:                 DefaultIdleTimeout,
		UpstreamHeaderTimeout:       DefaultUpstreamHeaderTimeout,
	}
	if s.str("listen", &g.Listen) {
		checkListen(s, "listen", g.Listen)
	}
	s.boolean("allow_remote_upstream", &g.AllowRemoteUpstream)
	if s.str("upstream", &g.Upstream) {
		d.guardUpstream = b.Body.Attributes["upstream"].Expr.Range()
		if msg := checkUpstream(g.Upstream, g.AllowRemoteUpstream); msg != "" {
			s.c.at(b.Body.Attributes["upstream"].Expr.Range(), "%s", msg)
		}
	} else if s.missing("upstream") {
		s.c.at(b.TypeRange, "guard needs an upstream: write upstream = \"unix:///run/glmctl/vllm.sock\" or \"http://127.0.0.1:8001\"")
	}
	if s.str("program", &g.Program) {
		d.guardProgram = b.Body.Attributes["program"].Expr.Range()
	}
	s.file("keys_file", "/etc/glmctl", &g.KeysFile)
	s.file("limits_file", "/etc/glmctl", &g.LimitsFile)
	if s.str("limits_store", &g.LimitsStore) && g.LimitsStore != "" {
		u, err := url.Parse(g.LimitsStore)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			s.c.at(b.Body.Attributes["limits_store"].Expr.Range(), "invalid limits_store %q: write \"\" (in-process) or a Redis URL such as \"redis://127.0.0.1:6379/0\" (rediss:// for TLS, unix:///path for a socket)", g.LimitsStore)
		}
	}
	s.file("limits_store_password_file", "/etc/glmctl", &g.LimitsStorePasswordFile)
	s.file("limits_store_ca_file", "/etc/glmctl", &g.LimitsStoreCAFile)
	s.file("limits_store_cert_file", "/etc/glmctl", &g.LimitsStoreCertFile)
	s.file("limits_store_key_file", "/etc/glmctl", &g.LimitsStoreKeyFile)
	g.LimitsStoreFailure = "closed"
	s.enum("limits_store_failure", &g.LimitsStoreFailure, "closed", "open")
	for _, name := range []string{"limits_store_password_file", "limits_store_ca_file", "limits_store_cert_file", "limits_store_key_file", "limits_store_failure"} {
		if a, ok := b.Body.Attributes[name]; ok && g.LimitsStore == "" {
			s.c.at(a.Expr.Range(), "%s has no effect without a Redis limits_store: remove it, or set limits_store = \"redis://…\"", name)
		}
	}
	if g.LimitsStore != "" {
		cert, certOK := b.Body.Attributes["limits_store_cert_file"]
		key, keyOK := b.Body.Attributes["limits_store_key_file"]
		switch {
		case certOK && !keyOK:
			s.c.at(cert.Expr.Range(), "limits_store_cert_file needs its key: add limits_store_key_file = \"/etc/glmctl/redis-client.key\"")
		case keyOK && !certOK:
			s.c.at(key.Expr.Range(), "limits_store_key_file needs its certificate: add limits_store_cert_file = \"/etc/glmctl/redis-client.pem\"")
		}
		for _, a := range []*hclsyntax.Attribute{b.Body.Attributes["limits_store_ca_file"], cert, key} {
			if u, err := url.Parse(g.LimitsStore); a != nil && err == nil && u.Scheme != "rediss" {
				s.c.at(a.Expr.Range(), "%s is for TLS, and limits_store %q does not use it: write rediss://… or remove %s", a.Name, g.LimitsStore, a.Name)
			}
		}
	}
	s.size("max_body", &g.MaxBody)
	if a, ok := b.Body.Attributes["max_body"]; ok && g.MaxBody <= 0 {
		s.c.at(a.Expr.Range(), "max_body must be larger than zero: write e.g. max_body = \"4MiB\"")
	}
	s.integer("default_max_tokens", &g.DefaultMaxTokens, 1)
	s.integer("max_model_len", &g.MaxModelLen, 1)
	s.integer("max_connections", &g.MaxConnections, 1)
	s.integer("max_unauthenticated_per_client", &g.MaxUnauthenticatedPerClient, 1)
	s.duration("header_timeout", &g.HeaderTimeout, false)
	s.duration("body_timeout", &g.BodyTimeout, false)
	s.duration("idle_timeout", &g.IdleTimeout, false)
	s.duration("upstream_header_timeout", &g.UpstreamHeaderTimeout, false)
	if rngs, ok := s.strList("trusted_proxies", &g.TrustedProxies); ok {
		for i, tp := range g.TrustedProxies {
			if _, err := netip.ParsePrefix(tp); err == nil {
				continue
			}
			if _, err := netip.ParseAddr(tp); err == nil {
				continue
			}
			s.c.at(rngs[i], "invalid trusted_proxies entry %q: write a CIDR such as \"10.0.0.0/8\" or an address such as \"10.0.0.1\"", tp)
		}
	}
	s.duration("drain_timeout", &g.DrainTimeout, true)
	if gb := s.block("global"); gb != nil {
		gs := s.child(gb, "guard global")
		g.Global = &GlobalLimits{}
		gs.integer("rpm", &g.Global.RPM, 0)
		gs.integer("concurrency", &g.Global.Concurrency, 0)
		gs.finish(nil)
	}
	if tb := s.block("tls"); tb != nil {
		ts := s.child(tb, "guard tls")
		g.TLS = &TLS{}
		for _, f := range []struct {
			name string
			dst  *string
		}{{"cert", &g.TLS.Cert}, {"key", &g.TLS.Key}} {
			a := tb.Body.Attributes[f.name]
			switch ok := ts.file(f.name, "/etc/glmctl/tls", f.dst); {
			case ts.missing(f.name):
				s.c.at(tb.TypeRange, "tls needs %s: write %s = \"/etc/glmctl/tls/%s.pem\"", f.name, f.name, f.name)
			case ok && *f.dst == "":
				s.c.at(a.Expr.Range(), "tls %s must not be empty: write the path of the PEM file", f.name)
			}
		}
		ts.finish(nil)
	}
	s.finish(nil)
	return g
}

func (d *decoder) audit(s *section) *Audit {
	a := &Audit{
		Path:    DefaultAuditPath,
		OnError: "reject",
		Fsync:   "interval",
		Level:   "metadata",
		Rotate:  Rotate{MaxSize: DefaultAuditMaxSize, Keep: DefaultAuditKeep, Compress: true},
	}
	if s.file("path", "/var/log/glmctl", &a.Path) && a.Path == "" {
		s.c.at(s.body.Attributes["path"].Expr.Range(), "audit path must not be empty: write path = %q or remove the audit block", DefaultAuditPath)
	}
	s.enum("on_error", &a.OnError, "reject", "continue")
	s.enum("fsync", &a.Fsync, "always", "interval", "never")
	s.enum("level", &a.Level, "metadata", "request", "request_response")
	s.file("hmac_key_file", "/etc/glmctl", &a.HMACKeyFile)
	if rb := s.block("rotate"); rb != nil {
		rs := s.child(rb, "audit rotate")
		rs.size("max_size", &a.Rotate.MaxSize)
		rs.boolean("daily", &a.Rotate.Daily)
		rs.integer("keep", &a.Rotate.Keep, 1)
		rs.boolean("compress", &a.Rotate.Compress)
		rs.finish(nil)
	}
	s.finish(nil)
	return a
}

// validPort reports whether port is a number in 0..65535 (1..65535 unless
// zeroOK).
func validPort(port string, zeroOK bool) bool {
	n, err := strconv.Atoi(port)
	if err != nil || n > 65535 || n < 0 {
		return false
	}
	return n > 0 || zeroOK
}

// checkListen reports a listen address that is not host:port. Port 0 (any
// free port) is allowed; an empty host means every interface.
func checkListen(s *section, name, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err == nil && validPort(port, true) {
		return
	}
	s.c.at(s.body.Attributes[name].Expr.Range(), "invalid %s %q: write host:port such as \"127.0.0.1:8000\" or \"0.0.0.0:8000\"", name, addr)
}

// maxSocketPath is the size of sockaddr_un's path on Linux (with its NUL).
const maxSocketPath = 108

// checkUpstream returns what is wrong with a guard upstream, or "".
func checkUpstream(up string, allowRemote bool) string {
	if _, err := ParseUpstream(up, allowRemote); err != nil {
		return err.Error()
	}
	return ""
}

// Upstream is a parsed guard.upstream: a unix socket, or an http(s) host.
type Upstream struct {
	Scheme string // unix | http | https
	Host   string // host:port ("" for a unix socket)
	Socket string // the socket's absolute path ("" for http(s))
}

// ParseUpstream reads a guard upstream: "unix:///absolute/path.sock", or
// "http(s)://host:port" with nothing else (no user, path, query or
// fragment: the guard forwards each request's own path) on loopback unless
// allowRemote. It is the one parser of the setting: the config checks it
// with it, and the guard dials what it returns.
func ParseUpstream(up string, allowRemote bool) (Upstream, error) {
	const want = `write "unix:///run/glmctl/vllm.sock" or a loopback URL such as "http://127.0.0.1:8001"`
	u, err := url.Parse(up)
	if err != nil {
		return Upstream{}, fmt.Errorf("invalid upstream %q: %s", up, want)
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if p == "" {
			p = u.Opaque
		}
		if u.Host != "" || !strings.HasPrefix(p, "/") {
			return Upstream{}, fmt.Errorf("invalid upstream %q: a unix socket needs an absolute path with three slashes, e.g. \"unix:///run/glmctl/vllm.sock\"", up)
		}
		if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(up, "?") {
			return Upstream{}, fmt.Errorf("upstream %q carries a query or fragment: write %q", up, "unix://"+p)
		}
		return Upstream{Scheme: "unix", Socket: p}, nil
	case "http", "https":
	default:
		return Upstream{}, fmt.Errorf("invalid upstream %q: %s", up, want)
	}
	if u.Host == "" {
		return Upstream{}, fmt.Errorf("invalid upstream %q: %s", up, want)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(up, "?") {
		return Upstream{}, fmt.Errorf("upstream %q carries more than scheme, host and port: write %q (no user, query or fragment)", up, u.Scheme+"://"+u.Host)
	}
	if u.Path != "" && u.Path != "/" {
		return Upstream{}, fmt.Errorf("upstream %q has a path: write %q; the guard forwards each request's own path", up, u.Scheme+"://"+u.Host)
	}
	if !allowRemote && !IsLoopback(u.Hostname()) {
		return Upstream{}, fmt.Errorf("upstream %q is not on loopback: use a unix socket or 127.0.0.1, or set allow_remote_upstream = true if the network to it is trusted", up)
	}
	return Upstream{Scheme: u.Scheme, Host: u.Host}, nil
}

// IsLoopback reports whether host (a name or an address, IPv6 with or
// without brackets) names this machine's loopback interface. It is the one
// loopback check of glmctl.
func IsLoopback(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
