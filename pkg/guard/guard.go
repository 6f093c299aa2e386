package guard

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// Auditor records audit records. Write returns once the record has completed
// write(2) (and fsync, per the writer's policy); an error means the record
// could not be written, and the guard answers 503. A writer configured with
// on_error = "continue" returns nil instead. Neither Write nor Submit keeps
// r after it returns: the guard fills the same record again.
type Auditor interface {
	Write(ctx context.Context, r *audit.Record) error
}

// Submitter is implemented by an Auditor that can queue a record without
// waiting for it to be written (audit.Writer). The guard submits its
// "completed" records that way: the client has its answer already, and the
// record is written with the next batch; the writer logs and counts what it
// cannot write.
type Submitter interface {
	Submit(r *audit.Record) error
}

// Leveler is implemented by an Auditor that stores bodies at some levels
// (audit.Writer): with "request" the guard puts the client's request body in
// the received record, with "request_response" the response body in the
// completed record too (each cut at 64 KiB). An Auditor without it gets
// metadata only.
type Leveler interface {
	Level() string
}

// Deps are the guard's collaborators.
type Deps struct {
	Logger     hclog.Logger
	Registerer prometheus.Registerer // may be nil: metrics are kept but not exposed
	Audit      Auditor               // may be nil: no audit
	// Ready tells whether the program the guard gates on (guard.program)
	// is ready; false: 503 + Retry-After. Called with "" when no program is
	// named. Nil: always ready.
	Ready func(program string) bool
	// Store decides admissions; nil: an in-process MemoryStore.
	Store Store
	// Reloads are the shared config reload gauges (see NewReloadMetrics);
	// nil: the guard creates and registers its own on Registerer.
	Reloads *ReloadMetrics
	// Policy is the config's request policy block (nil: none); reloads
	// pass theirs to Prepare.
	Policy *config.Policy
	// FDBudget is how many file descriptors the guard's connections may
	// use (client and upstream side together), the rest being kept for the
	// supervisor; 0: no budget known. max_connections is fitted to it.
	FDBudget int
}

// Guard is the authenticating, throttling, auditing proxy.
type Guard struct {
	// static is the config block the guard was built from; the settings
	// that only a restart changes (listen, upstream, tls, header and idle
	// timeouts) are read from it. Everything else is in snap.
	static *config.Guard
	log    hclog.Logger
	audit  Auditor
	// auditLevel is the Auditor's level when it tells one (see Leveler):
	// it decides which bodies the guard hands to the audit records.
	auditLevel string
	ready      func(string) bool
	store      Store
	// shared is the Redis store when limits are shared between guards
	// (store is then the same); fallback, with limits_store_failure =
	// "open", decides while Redis cannot be reached.
	shared   *RedisStore
	fallback *MemoryStore
	up       upstream
	// upstream is the proxy's connection pool to the model server.
	upstream *upstreamClient
	m        *metrics
	conns    *connLimiter
	fdBudget int
	handler  http.Handler

	// snap is the settings in force (see settings.go).
	snap atomic.Pointer[settings]
	cert atomic.Pointer[tls.Certificate]

	lnMu sync.Mutex
	ln   net.Listener // bound by Listen
	addr atomic.Pointer[net.Addr]

	// auditState turns audit failures into one log line per change of
	// state and a periodic summary, not a line per refused request.
	auditState auditHealth
	// hung is set when the upstream sent no answer in time.
	hung hungMark
	// answering holds the answers being passed through, so that a drain
	// that runs out can end each one properly before the connections go.
	answering answerSet

	reload     sync.Mutex // serialises reloads; guards files and tlsSums
	files      map[string]*FileState
	tlsSums    map[string][sha256.Size]byte
	retargetCh chan struct{} // the watched files may have changed
}

// upstream is where admitted requests go.
type upstream struct {
	scheme string // http | https
	host   string // host:port, or "localhost" for a unix socket
	socket string // unix socket path, or ""
}

// parseUpstream reads guard.upstream with the config's own parser
// (config.ParseUpstream): a unix socket, or a loopback URL unless remote is
// allowed.
func parseUpstream(u string, allowRemote bool) (upstream, error) {
	if u == "" {
		return upstream{}, errors.New("guard.upstream is required (unix:///path/to/vllm.sock or http://127.0.0.1:PORT)")
	}
	cu, err := config.ParseUpstream(u, allowRemote)
	if err != nil {
		return upstream{}, err
	}
	if cu.Socket != "" {
		return upstream{scheme: "http", host: "localhost", socket: cu.Socket}, nil
	}
	return upstream{scheme: cu.Scheme, host: cu.Host}, nil
}

// New checks cfg, loads the keys and limits files (an invalid file is an
// error here; later it only keeps the previous state) and builds the handler.
func New(cfg *config.Guard, deps Deps) (*Guard, error) {
	if cfg == nil {
		return nil, errors.New("guard: no guard configuration")
	}
	up, err := parseUpstream(cfg.Upstream, cfg.AllowRemoteUpstream)
	if err != nil {
		return nil, config.Setting("guard.upstream", err)
	}
	g := &Guard{
		static:     cfg,
		log:        deps.Logger,
		audit:      deps.Audit,
		ready:      deps.Ready,
		store:      deps.Store,
		up:         up,
		fdBudget:   deps.FDBudget,
		files:      map[string]*FileState{},
		tlsSums:    map[string][sha256.Size]byte{},
		retargetCh: make(chan struct{}, 1),
	}
	if g.log == nil {
		g.log = hclog.NewNullLogger()
	}
	if l, ok := deps.Audit.(Leveler); ok {
		g.auditLevel = l.Level()
	}
	g.log = g.log.Named("guard")
	if g.store == nil && cfg.LimitsStore != "" {
		opts := RedisOptionsFor(cfg)
		opts.Logger = g.log.Named("limits")
		rs, err := NewRedisStore(opts)
		if err != nil {
			return nil, config.Setting("guard.limits_store", err)
		}
		g.store, g.shared = rs, rs
		if deps.Registerer != nil {
			for _, c := range rs.Collectors() {
				if err := deps.Registerer.Register(c); err != nil {
					return nil, fmt.Errorf("register limits store metrics: %w", err)
				}
			}
		}
		if cfg.LimitsStoreFailure == "open" {
			g.fallback = NewMemoryStore(nil)
		}
	}
	if g.store == nil {
		g.store = NewMemoryStore(nil)
	}
	if g.m, err = newMetrics(deps.Registerer, g, deps.Reloads); err != nil {
		return nil, err
	}
	g.conns = newConnLimiter(g.log, g.m)
	g.conns.tls = cfg.TLS != nil
	s, err := g.staticSettings(cfg, deps.Policy)
	if err != nil {
		return nil, err
	}
	f, kl := g.parseKeys(cfg.KeysFile)
	lim, ll := g.parseLimits(cfg.LimitsFile)
	errs := []error{kl.err, ll.err}
	if cfg.TLS != nil {
		errs = append(errs, config.Setting("guard.tls.cert", g.loadTLS(true)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.keyFile, s.keys, s.limits = f, keys.NewSet(f), lim
	g.reload.Lock()
	g.install(s)
	g.noteLoad(kl, len(f.Entries))
	if ll.path != "" {
		g.noteLoad(ll, len(lim.PerKey))
	}
	g.reload.Unlock()
	g.upstream = newUpstreamClient(up, s.maxConns)
	g.handler = http.HandlerFunc(g.serve)
	return g, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Handler returns the whole chain (request id, auth, limits, audit, proxy).
func (g *Guard) Handler() http.Handler { return g.handler }

// Addr returns the listening address once Listen has bound it, else nil.
func (g *Guard) Addr() net.Addr {
	if a := g.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// LimitsStore describes the limits store: "in-process", or the Redis URL
// (without its password) and whether Redis answers.
func (g *Guard) LimitsStore() (desc string, up bool) {
	if g.shared == nil {
		return "in-process", true
	}
	return g.shared.String(), g.shared.Up()
}

// Keys returns the keys in force (they follow every reload).
func (g *Guard) Keys() *keys.Set { return g.snap.Load().keys }

// FilePaths returns the keys and limits file paths in force ("" when none).
func (g *Guard) FilePaths() (keysFile, limitsFile string) {
	cfg := g.snap.Load().cfg
	return cfg.KeysFile, cfg.LimitsFile
}

// PolicyRules is the number of request policy rules in force (-1: no
// policy block).
func (g *Guard) PolicyRules() int {
	p := g.snap.Load().policy
	if p == nil {
		return -1
	}
	return p.Rules()
}

// MaxConnections is the cap on open client connections in force.
func (g *Guard) MaxConnections() int { return g.snap.Load().maxConns }

// OpenConnections is the number of open client connections.
func (g *Guard) OpenConnections() int { return g.conns.Open() }

// Listen binds the guard's listener (TLS when configured) with its
// connection caps. Run calls it when it has not been called; the daemon
// calls it before telling systemd it is ready, so that READY=1 means the
// port answers.
func (g *Guard) Listen() error {
	g.lnMu.Lock()
	defer g.lnMu.Unlock()
	if g.ln != nil {
		return nil
	}
	listen := g.static.Listen
	if listen == "" {
		listen = config.DefaultGuardListen
	}
	raw, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("guard listen: %w", err)
	}
	var ln net.Listener = &capListener{Listener: raw, lim: g.conns}
	if g.static.TLS != nil {
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return g.cert.Load(), nil
			},
		})
	}
	a := raw.Addr()
	g.addr.Store(&a)
	g.ln = ln
	return nil
}

// Run serves on the listener (binding it first if Listen was not called),
// watches the keys, limits and certificate files, and serves until ctx is
// cancelled; then it stops accepting and lets requests in flight finish for
// up to drain_timeout.
func (g *Guard) Run(ctx context.Context) error {
	if err := g.Listen(); err != nil {
		return err
	}
	g.lnMu.Lock()
	ln := g.ln
	g.lnMu.Unlock()
	headerTimeout, idle := g.static.HeaderTimeout, g.static.IdleTimeout
	if headerTimeout <= 0 {
		headerTimeout = config.DefaultHeaderTimeout
	}
	if idle <= 0 {
		idle = config.DefaultIdleTimeout
	}
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       withConn,
		ErrorLog:          g.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	g.log.Info("guard listening", "addr", g.Addr().String(), "upstream", g.static.Upstream, "tls", g.static.TLS != nil,
		"max_connections", g.MaxConnections())

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchDone := make(chan error, 1)
	go func() { watchDone <- g.watch(watchCtx) }()

	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()

	select {
	case err := <-serveDone:
		stopWatch()
		<-watchDone
		return fmt.Errorf("guard serve: %w", err)
	case <-ctx.Done():
	}
	drain := g.snap.Load().drainTimeout
	g.log.Info("guard draining", "timeout", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// Answers still being passed through are ended first — a stream
		// with an error event in OpenAI's shape, a body cut — and only then
		// are the connections closed: a client never sees its stream stop
		// without a word.
		n, ended := g.answering.cut()
		g.log.Warn("guard drain timed out; ending the open answers and closing the remaining connections",
			"error", err, "open_answers", n)
		select {
		case <-ended:
		case <-time.After(cutGrace):
			g.log.Warn("open answers did not end in time; closing their connections", "grace", cutGrace.String())
		}
		_ = srv.Close()
	}
	<-serveDone
	g.upstream.closeIdle()
	if g.shared != nil {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := g.shared.Close(cctx); err != nil {
			g.log.Warn("limits store: settlements left unsent at shutdown", "error", err)
		}
		ccancel()
	}
	stopWatch()
	if werr := <-watchDone; werr != nil {
		g.log.Warn("file watcher stopped", "error", werr)
	}
	return nil
}

// RecordReload sets the reload metrics for a file the guard does not own (the
// daemon's HCL config, for example), so all reloads share one metric family.
func (g *Guard) RecordReload(file string, ok bool) { g.m.reloaded(file, ok) }

func (g *Guard) loadTLS(first bool) error {
	g.reload.Lock()
	defer g.reload.Unlock()
	t := g.static.TLS
	certSrc, err := os.ReadFile(t.Cert)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	keySrc, err := os.ReadFile(t.Key)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	cs, ks := sha256.Sum256(certSrc), sha256.Sum256(keySrc)
	if !first && g.tlsSums[t.Cert] == cs && g.tlsSums[t.Key] == ks {
		return nil
	}
	l := loaded{path: t.Cert, sum: cs}
	cert, err := tls.X509KeyPair(certSrc, keySrc)
	if err != nil {
		l.err = fmt.Errorf("tls certificate %s: %w", t.Cert, err)
		g.noteFailure(l)
		if !first {
			g.log.Error("tls certificate invalid; keeping the previous one", "file", t.Cert, "error", err)
		}
		return l.err
	}
	g.cert.Store(&cert)
	g.tlsSums[t.Cert], g.tlsSums[t.Key] = cs, ks
	g.noteLoad(l, 0)
	if !first {
		g.log.Info("tls certificate reloaded", "file", t.Cert)
	}
	return nil
}
