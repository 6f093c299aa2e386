// Package console is glmctl's web console: a small server-rendered site on its
// own listener (config `console { listen = "127.0.0.1:9402" }`) from which an
// operator signed in with an admin key sees the programs, GPUs, guard, keys,
// audit trail and configuration, and acts on them (start, stop, restart,
// reload, create, rotate and revoke keys), each act confirmed and written to
// the audit trail under the admin key's name.
//
// Pages are html/template renderings that read without JavaScript; one
// embedded script confirms actions in a dialog, refreshes the live sections by
// polling /live (JSON holding the sections' HTML) and follows a log over
// server-sent events. Every asset is embedded; charts are SVG drawn here.
//
// Security: sessions live server-side behind a random id in an HttpOnly,
// SameSite=Strict cookie (Secure with TLS) with an absolute and an idle
// expiry; the admin key given at sign-in is looked up again in the keys in
// force on every request, so a revoked, disabled or expired key (or one no
// longer admin) ends its sessions at their next request. Every state-changing
// request is a POST carrying the session's CSRF token and passing a
// same-origin check (Sec-Fetch-Site, else Origin, else Referer). Sign-in
// attempts are limited per client address. Responses carry a strict
// Content-Security-Policy (no inline script or style), nosniff,
// Referrer-Policy no-referrer and frame-ancestors 'none'.
//
// The daemon wires it like its other listeners:
//
//	c, err := console.New(console.Options{
//		Listen:  cfg.Console.Listen,
//		Backend: consoleBackend{&backend{d: d}}, // + Keys, GuardFiles, GPUs
//		Audit:   d.audit, AuditPath: cfg.Audit.Path, AuditHMACKey: hmacKey,
//		Gatherer: d.registry, Logger: d.logger.Named("console"),
//	})
//	…
//	if err := c.Listen(); err != nil { … } // before READY=1
//	g.Go(func() error { return c.Run(gctx) })
package console

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/glmctl/glmctl/internal/control"
	"github.com/glmctl/glmctl/internal/gpu"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// Backend is what the console needs from the daemon. Its first part is the
// control socket's API (the daemon's control backend satisfies it); the
// console calls Start, Stop and Restart with wait false (the page shows the
// progress live) and never calls AuditReopen.
type Backend interface {
	control.Backend

	// Keys returns the keys in force — the guard's current set, following
	// reloads — or nil when there is none (no guard or keys file), in which
	// case nobody can sign in.
	Keys() *keys.Set
	// GuardFiles returns the paths of the keys and limits files in force
	// ("" for one that is not configured). Key actions edit the keys file
	// with keys.Update; the limits file gives the usage bars their limits.
	GuardFiles() (keysFile, limitsFile string)
	// GPUs returns what NVML reads now. nil, nil: the configuration uses no
	// GPU; an error (NVML missing, built without NVML) is shown as the one
	// line the GPU section holds.
	GPUs() ([]gpu.Device, error)
}

// AuditWriter records the console's own acts; *audit.Writer satisfies it.
type AuditWriter interface {
	Write(ctx context.Context, r *audit.Record) error
}

// Options configure a Server. Backend and Listen are required.
type Options struct {
	// Listen is the TCP address to serve on ("127.0.0.1:9402").
	Listen string
	// TLS, when set, serves HTTPS; the session cookie is then Secure and
	// named with the __Host- prefix, and HSTS is sent.
	TLS *tls.Config
	// Backend is the daemon.
	Backend Backend
	// Audit records every act (nil, or a nil *audit.Writer: acts are
	// only logged).
	Audit AuditWriter
	// AuditPath is the audit log (audit.path) whose recent records the
	// audit page shows and Verify checks ("" : no audit trail).
	AuditPath string
	// AuditHMACKey is the hmac_key_file's key, for Verify (nil: none).
	AuditHMACKey []byte
	// Gatherer is the daemon's registry; the guard's charts and the key
	// usage bars are sampled from it (nil: no charts, no usage bars).
	Gatherer prometheus.Gatherer
	// Logger defaults to a null logger.
	Logger hclog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time

	// SessionTTL is a session's absolute lifetime (default 12h);
	// SessionIdle how long it lives without a page view (default 1h). The
	// live updates do not count as views.
	SessionTTL, SessionIdle time.Duration
	// LoginsPerMinute bounds sign-in attempts per client address
	// (default 10).
	LoginsPerMinute int
	// SampleEvery is how often the metrics are sampled (default 5s);
	// History how long samples are kept for the charts (default 10m).
	SampleEvery, History time.Duration
}

func (o *Options) setDefaults() error {
	if o.Backend == nil {
		return errors.New("console: no backend")
	}
	if o.Listen == "" {
		return errors.New("console: no listen address")
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	// A nil pointer in an interface is not nil: take it for "none".
	if w, ok := o.Audit.(*audit.Writer); ok && w == nil {
		o.Audit = nil
	}
	if g, ok := o.Gatherer.(*prometheus.Registry); ok && g == nil {
		o.Gatherer = nil
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.SessionIdle <= 0 {
		o.SessionIdle = time.Hour
	}
	if o.SessionIdle > o.SessionTTL {
		o.SessionIdle = o.SessionTTL
	}
	if o.LoginsPerMinute <= 0 {
		o.LoginsPerMinute = 10
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 5 * time.Second
	}
	if o.History <= 0 {
		o.History = 10 * time.Minute
	}
	return nil
}

// Server is the console. New builds it, Listen binds it, Run serves it.
type Server struct {
	opts     Options
	log      hclog.Logger
	now      func() time.Time
	pages    *pages
	sessions *sessions
	logins   *loginLimiter
	sampler  *sampler
	verify   *verifier
	lastUsed lastUsedCache
	handler  http.Handler

	mu  sync.Mutex
	ln  net.Listener
	srv *http.Server

	// base is the parent of every request's context: cancelled when
	// Run stops, so log streams end before Shutdown waits for them.
	base       context.Context
	cancelBase context.CancelFunc
}

// New checks opts and builds the console; nothing listens yet.
func New(opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		pages:    p,
		sessions: newSessions(opts.SessionTTL, opts.SessionIdle),
		logins:   newLoginLimiter(opts.LoginsPerMinute),
		sampler:  newSampler(opts.Gatherer, int(opts.History/opts.SampleEvery)+1),
		verify:   &verifier{},
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.handler = s.routes()
	return s, nil
}

// Handler returns the console's whole handler chain (for tests and for a
// caller that serves it itself).
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the listener, so that the daemon can report READY only once
// every listener is up.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("console listen: %w", err)
	}
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (nil before Listen).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Run samples the metrics and serves until ctx ends, then shuts down
// gracefully (2 s, then connections are closed). It binds first if Listen
// was not called.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	srv, ln := s.srv, s.ln
	s.mu.Unlock()

	var wg sync.WaitGroup
	sampCtx, stopSampling := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.runSampler(sampCtx)
	}()
	defer func() {
		stopSampling()
		wg.Wait()
	}()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("console listening", "addr", ln.Addr().String(), "tls", s.opts.TLS != nil)
	select {
	case err := <-errc:
		s.cancelBase()
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	s.cancelBase() // log streams and live requests end now
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// runSampler samples the metrics now and every SampleEvery until ctx ends.
func (s *Server) runSampler(ctx context.Context) {
	s.sampler.sample(s.now())
	t := time.NewTicker(s.opts.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sampler.sample(s.now())
			s.sessions.purge(s.now())
			s.logins.purge(s.now())
		}
	}
}

// record writes an admin record for one of the console's acts; a failure
// to write is logged (the act itself has happened).
func (s *Server) record(r *http.Request, sess *session, action, target string, actErr error) {
	rec := &audit.Record{Stage: audit.StageAdmin, Action: action, Target: target, Client: clientAddr(r),
		UserAgent: r.UserAgent()}
	if sess != nil {
		rec.Key, rec.Role = sess.name, keys.RoleAdmin
	}
	if actErr != nil {
		rec.Error = actErr.Error()
	}
	s.log.Info("console: "+action, "target", target, "key", rec.Key, "client", rec.Client, "error", rec.Error)
	if s.opts.Audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.opts.Audit.Write(ctx, rec); err != nil {
		s.log.Error("console: audit record not written", "action", action, "error", err)
	}
}
