package guard

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/glmctl/glmctl/pkg/audit"
	"github.com/glmctl/glmctl/pkg/config"
	"github.com/glmctl/glmctl/pkg/jsonc"
	"github.com/glmctl/glmctl/pkg/keys"
)

// Auditor records audit records. Write returns once the record has completed
// write(2) (and fsync, per the writer's policy); an error means the record
// could not be written, and the guard answers 503. A writer configured with
// on_error = "continue" returns nil instead.
type Auditor interface {
	Write(ctx context.Context, r *audit.Record) error
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
	Ready      func() bool           // nil: always ready; false: 503 + Retry-After
	// Store decides admissions; nil: an in-process MemoryStore.
	Store Store
	// Reloads are the shared config reload gauges (see NewReloadMetrics);
	// nil: the guard creates and registers its own on Registerer.
	Reloads *ReloadMetrics
}

// Guard is the authenticating, throttling, auditing proxy.
type Guard struct {
	cfg   *config.Guard
	log   hclog.Logger
	audit Auditor
	// auditLevel is the Auditor's level when it tells one (see Leveler):
	// it decides which bodies the guard hands to the audit records.
	auditLevel string
	ready      func() bool
	store      Store
	global     GlobalLimit
	up         upstream
	proxy      *httputil.ReverseProxy
	// transport is the proxy's connection pool to the upstream.
	transport *http.Transport
	trusted   []netip.Prefix
	m         *metrics
	handler   http.Handler

	keys   atomic.Pointer[keys.Set]
	limits atomic.Pointer[Limits]
	cert   atomic.Pointer[tls.Certificate]
	addr   atomic.Pointer[net.Addr]
	reload sync.Mutex // serialises reloads
	sums   map[string][sha256.Size]byte
	// keyFile is the keys file as last loaded (under reload), to tell
	// what a reload changed.
	keyFile *keys.File

	readHeaderTimeout time.Duration // slow-header cut-off (10s; tests shorten it)
}

// upstream is where admitted requests go.
type upstream struct {
	scheme string // http | https
	host   string // host:port, or "localhost" for a unix socket
	socket string // unix socket path, or ""
}

// parseUpstream checks that u is a unix socket or a loopback URL (unless
// remote is allowed).
func parseUpstream(u string, allowRemote bool) (upstream, error) {
	if u == "" {
		return upstream{}, errors.New("guard.upstream is required (unix:///path/to/vllm.sock or http://127.0.0.1:PORT)")
	}
	pu, err := url.Parse(u)
	if err != nil {
		return upstream{}, fmt.Errorf("guard.upstream: %w", err)
	}
	switch pu.Scheme {
	case "unix":
		p := pu.Path
		if pu.Host != "" || p == "" || !filepath.IsAbs(p) {
			return upstream{}, fmt.Errorf("guard.upstream %q: write a unix socket as unix:///absolute/path", u)
		}
		return upstream{scheme: "http", host: "localhost", socket: p}, nil
	case "http", "https":
		if pu.Host == "" || (pu.Path != "" && pu.Path != "/") || pu.RawQuery != "" {
			return upstream{}, fmt.Errorf("guard.upstream %q: give only scheme, host and port (no path)", u)
		}
		if !allowRemote && !isLoopback(pu.Hostname()) {
			return upstream{}, fmt.Errorf("guard.upstream %q is not a loopback address or unix socket: the model server must not be reachable around the guard (set allow_remote_upstream = true if it really lives elsewhere)", u)
		}
		return upstream{scheme: pu.Scheme, host: pu.Host}, nil
	default:
		return upstream{}, fmt.Errorf("guard.upstream %q: scheme must be unix, http or https", u)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// New checks cfg, loads the keys and limits files (an invalid file is an
// error here; later it only keeps the previous state) and builds the handler.
func New(cfg *config.Guard, deps Deps) (*Guard, error) {
	if cfg == nil {
		return nil, errors.New("guard: no guard configuration")
	}
	up, err := parseUpstream(cfg.Upstream, cfg.AllowRemoteUpstream)
	if err != nil {
		return nil, err
	}
	if cfg.KeysFile == "" {
		return nil, errors.New("guard.keys_file is required: the guard refuses every request without keys")
	}
	g := &Guard{
		cfg:   cfg,
		log:   deps.Logger,
		audit: deps.Audit,
		ready: deps.Ready,
		store: deps.Store,
		up:    up,
		sums:  map[string][sha256.Size]byte{},

		readHeaderTimeout: 10 * time.Second,
	}
	if g.log == nil {
		g.log = hclog.NewNullLogger()
	}
	if l, ok := deps.Audit.(Leveler); ok {
		g.auditLevel = l.Level()
	}
	g.log = g.log.Named("guard")
	if g.store == nil {
		g.store = NewMemoryStore(nil)
	}
	if cfg.Global != nil {
		g.global = GlobalLimit{RPM: int64(cfg.Global.RPM), Concurrency: int64(cfg.Global.Concurrency)}
	}
	for _, c := range cfg.TrustedProxies {
		p, err := parsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("guard.trusted_proxies: %w", err)
		}
		g.trusted = append(g.trusted, p)
	}
	if g.m, err = newMetrics(deps.Registerer, g, deps.Reloads); err != nil {
		return nil, err
	}
	var errs []error
	if err := g.loadKeys(true); err != nil {
		errs = append(errs, err)
	}
	if err := g.loadLimits(true); err != nil {
		errs = append(errs, err)
	}
	if cfg.TLS != nil {
		if err := g.loadTLS(true); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g.proxy = g.newProxy()
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

// Addr returns the listening address once Run is listening, else nil.
func (g *Guard) Addr() net.Addr {
	if a := g.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Run listens on cfg.Listen (TLS when configured), watches the keys, limits
// and certificate files, and serves until ctx is cancelled; then it stops
// accepting and lets requests in flight finish for up to cfg.DrainTimeout.
func (g *Guard) Run(ctx context.Context) error {
	listen := g.cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:8000"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("guard listen: %w", err)
	}
	if g.cfg.TLS != nil {
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return g.cert.Load(), nil
			},
		})
	}
	a := ln.Addr()
	g.addr.Store(&a)
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: g.readHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          g.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	g.log.Info("guard listening", "addr", a.String(), "upstream", g.cfg.Upstream, "tls", g.cfg.TLS != nil)

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
	drain := g.cfg.DrainTimeout
	if drain <= 0 {
		drain = 30 * time.Second
	}
	g.log.Info("guard draining", "timeout", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		g.log.Warn("guard drain timed out; closing the remaining connections", "error", err)
		_ = srv.Close()
	}
	<-serveDone
	g.transport.CloseIdleConnections()
	stopWatch()
	if werr := <-watchDone; werr != nil {
		g.log.Warn("file watcher stopped", "error", werr)
	}
	return nil
}

// Reload re-reads the keys and limits files (and the TLS certificate). A file
// that does not parse keeps the previous state; the error says why, with
// line:col.
func (g *Guard) Reload() error {
	errs := []error{g.loadKeys(false), g.loadLimits(false)}
	if g.cfg.TLS != nil {
		errs = append(errs, g.loadTLS(false))
	}
	return errors.Join(errs...)
}

// RecordReload sets the reload metrics for a file the guard does not own (the
// daemon's HCL config, for example), so all reloads share one metric family.
func (g *Guard) RecordReload(file string, ok bool) { g.m.reloaded(file, ok) }

// changed reads path and reports whether its content differs from the last
// successful load.
func (g *Guard) changed(path string, force bool) ([]byte, [sha256.Size]byte, bool, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, false, err
	}
	sum := sha256.Sum256(src)
	return src, sum, force || g.sums[path] != sum, nil
}

func (g *Guard) loadKeys(first bool) error {
	g.reload.Lock()
	recs, err := g.loadKeysLocked(first)
	g.reload.Unlock()
	g.writeAdmin(recs) // outside the lock: a slow audit log never holds up reloads
	return err
}

// loadKeysLocked loads the keys file (g.reload held) and returns the admin
// records of what a reload changed.
func (g *Guard) loadKeysLocked(first bool) ([]*audit.Record, error) {
	path := g.cfg.KeysFile
	src, sum, changed, err := g.changed(path, first)
	if err != nil {
		g.m.reloaded(path, false)
		g.log.Error("keys file unreadable; keeping the previous keys", "file", path, "error", err)
		return nil, fmt.Errorf("keys file: %w", err)
	}
	if !changed {
		return nil, nil
	}
	f, warns, err := keys.Parse(src)
	for _, w := range warns {
		g.log.Warn("keys file: "+w.Msg, "file", path, "line", w.Line, "col", w.Col)
	}
	if err != nil {
		g.m.reloaded(path, false)
		err = fmt.Errorf("keys file: %w", jsonc.InFile(path, err))
		if first {
			return nil, err
		}
		g.log.Error("keys file invalid; keeping the previous keys", "file", path, "error", err)
		return []*audit.Record{{Stage: audit.StageAdmin, Action: ActionKeysInvalid, Target: path, Error: err.Error()}}, err
	}
	set := keys.NewSet(f)
	g.keys.Store(set)
	g.m.setKeys(f)
	g.sums[path] = sum
	g.m.reloaded(path, true)
	if err := g.store.Retain(context.Background(), set.Has); err != nil {
		g.log.Warn("could not forget limit state of removed keys", "error", err)
	}
	var recs []*audit.Record
	if !first && g.keyFile != nil {
		recs = keyChanges(g.keyFile, f)
	}
	g.keyFile = f
	if !first {
		g.log.Info("keys reloaded", "file", path, "keys", set.Len(), "changes", len(recs))
	}
	return recs, nil
}

func (g *Guard) loadLimits(first bool) error {
	path := g.cfg.LimitsFile
	if path == "" {
		g.limits.Store(&Limits{})
		return nil
	}
	g.reload.Lock()
	rec, err := g.loadLimitsLocked(path, first)
	g.reload.Unlock()
	if rec != nil {
		g.writeAdmin([]*audit.Record{rec})
	}
	return err
}

// loadLimitsLocked loads the limits file (g.reload held) and returns the
// admin record of a reload, if any.
func (g *Guard) loadLimitsLocked(path string, first bool) (*audit.Record, error) {
	src, sum, changed, err := g.changed(path, first)
	if err != nil {
		g.m.reloaded(path, false)
		g.log.Error("limits file unreadable; keeping the previous limits", "file", path, "error", err)
		return nil, fmt.Errorf("limits file: %w", err)
	}
	if !changed {
		return nil, nil
	}
	l, warns, err := ParseLimits(src)
	for _, w := range warns {
		g.log.Warn("limits file: "+w, "file", path)
	}
	if err != nil {
		g.m.reloaded(path, false)
		err = fmt.Errorf("limits file: %w", jsonc.InFile(path, err))
		if first {
			return nil, err
		}
		g.log.Error("limits file invalid; keeping the previous limits", "file", path, "error", err)
		return &audit.Record{Stage: audit.StageAdmin, Action: ActionLimitsFailed, Target: path, Error: err.Error()}, err
	}
	g.limits.Store(l)
	g.sums[path] = sum
	g.m.reloaded(path, true)
	if first {
		return nil, nil
	}
	g.log.Info("limits reloaded", "file", path, "entries", len(l.PerKey))
	return &audit.Record{Stage: audit.StageAdmin, Action: ActionLimitsLoaded, Target: path}, nil
}

func (g *Guard) loadTLS(first bool) error {
	g.reload.Lock()
	defer g.reload.Unlock()
	certSrc, cs, c1, err := g.changed(g.cfg.TLS.Cert, first)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	keySrc, ks, c2, err := g.changed(g.cfg.TLS.Key, first)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	if !c1 && !c2 {
		return nil
	}
	cert, err := tls.X509KeyPair(certSrc, keySrc)
	if err != nil {
		g.m.reloaded(g.cfg.TLS.Cert, false)
		if !first {
			g.log.Error("tls certificate invalid; keeping the previous one", "file", g.cfg.TLS.Cert, "error", err)
		}
		return fmt.Errorf("tls certificate %s: %w", g.cfg.TLS.Cert, err)
	}
	g.cert.Store(&cert)
	g.sums[g.cfg.TLS.Cert], g.sums[g.cfg.TLS.Key] = cs, ks
	g.m.reloaded(g.cfg.TLS.Cert, true)
	if !first {
		g.log.Info("tls certificate reloaded", "file", g.cfg.TLS.Cert)
	}
	return nil
}
