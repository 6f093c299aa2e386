package guard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/jsonc"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// settings is one immutable view of everything the request path reads: the
// keys, the limits and every guard setting that can change while running.
// A reload builds a whole new one and swaps it in with one atomic store; a
// request loads the pointer once and sees one consistent view to its end.
type settings struct {
	cfg     *config.Guard // the config block these settings came from
	keys    *keys.Set
	keyFile *keys.File // as parsed, to tell what a reload changed
	limits  *Limits
	global  GlobalLimit
	trusted []netip.Prefix
	maxBody int64
	inspect inspectLimits
	// bodyTimeout bounds the reading of a request body.
	bodyTimeout time.Duration
	// program gates requests on it being ready ("" = no gating).
	program string
	// maxConns and maxUnauth are the connection caps (see conns.go).
	maxConns, maxUnauth int
	drainTimeout        time.Duration
	// upstreamHeaderTimeout bounds the wait for the upstream's headers.
	upstreamHeaderTimeout time.Duration
	// policy is the compiled request policy (nil: none); policyCfg the
	// block it came from.
	policy    *Policy
	policyCfg *config.Policy
}

// FileState is what the guard knows of one file it loads (keys, limits, TLS
// certificate), for `glmctl status`.
type FileState struct {
	Path     string    `json:"path"`
	SHA256   string    `json:"sha256,omitempty"`   // of the content in force
	LoadedAt time.Time `json:"loaded_at,omitzero"` // when the content in force was loaded
	Error    string    `json:"error,omitempty"`    // the last failed load, if it was the last load
	ErrorAt  time.Time `json:"error_at,omitzero"`  // when it failed
	Entries  int       `json:"entries,omitempty"`  // keys or limit entries in force
	Warnings int       `json:"warnings,omitempty"` // warnings of the content in force
	missing  bool
}

// restartOnly lists the guard settings a running guard cannot change: a
// reload that changes one is refused, naming it.
func restartOnly(old, cur *config.Guard) []string {
	var out []string
	add := func(changed bool, name string) {
		if changed {
			out = append(out, "guard."+name)
		}
	}
	add(old.Listen != cur.Listen, "listen")
	add(old.Upstream != cur.Upstream, "upstream")
	add(old.AllowRemoteUpstream != cur.AllowRemoteUpstream, "allow_remote_upstream")
	add(old.LimitsStore != cur.LimitsStore, "limits_store")
	add(old.LimitsStorePasswordFile != cur.LimitsStorePasswordFile, "limits_store_password_file")
	add(old.LimitsStoreCAFile != cur.LimitsStoreCAFile, "limits_store_ca_file")
	add(old.LimitsStoreCertFile != cur.LimitsStoreCertFile, "limits_store_cert_file")
	add(old.LimitsStoreKeyFile != cur.LimitsStoreKeyFile, "limits_store_key_file")
	add(old.LimitsStoreFailure != cur.LimitsStoreFailure, "limits_store_failure")
	add(old.HeaderTimeout != cur.HeaderTimeout, "header_timeout")
	add(old.IdleTimeout != cur.IdleTimeout, "idle_timeout")
	add((old.TLS == nil) != (cur.TLS == nil) || (old.TLS != nil && *old.TLS != *cur.TLS), "tls")
	return out
}

// ErrRestartRequired is wrapped by a reload refused because it changes a
// setting only a restart applies.
var ErrRestartRequired = errors.New("a restart is needed")

// staticSettings builds everything of a config block except the files.
func (g *Guard) staticSettings(cfg *config.Guard, pol *config.Policy) (*settings, error) {
	s := &settings{
		cfg:          cfg,
		maxBody:      cfg.MaxBody,
		program:      cfg.Program,
		bodyTimeout:  cfg.BodyTimeout,
		maxUnauth:    cfg.MaxUnauthenticatedPerClient,
		drainTimeout: cfg.DrainTimeout,

		upstreamHeaderTimeout: cfg.UpstreamHeaderTimeout,
		inspect: inspectLimits{
			defaultMaxTokens: int64(cfg.DefaultMaxTokens),
			maxModelLen:      int64(cfg.MaxModelLen),
		},
	}
	if s.maxBody <= 0 {
		s.maxBody = config.DefaultMaxBody
	}
	if s.inspect.defaultMaxTokens <= 0 {
		s.inspect.defaultMaxTokens = config.DefaultMaxTokens
	}
	if s.inspect.maxModelLen <= 0 {
		s.inspect.maxModelLen = config.DefaultMaxModelLen
	}
	if s.bodyTimeout <= 0 {
		s.bodyTimeout = config.DefaultBodyTimeout
	}
	if s.upstreamHeaderTimeout <= 0 {
		s.upstreamHeaderTimeout = config.DefaultUpstreamHeaderTimeout
	}
	if s.maxUnauth <= 0 {
		s.maxUnauth = config.DefaultMaxUnauthPerClient
	}
	if cfg.Global != nil {
		s.global = GlobalLimit{RPM: int64(cfg.Global.RPM), Concurrency: int64(cfg.Global.Concurrency)}
	}
	for _, c := range cfg.TrustedProxies {
		p, err := parsePrefix(c)
		if err != nil {
			return nil, config.Setting("guard.trusted_proxies", fmt.Errorf("guard.trusted_proxies: %w", err))
		}
		s.trusted = append(s.trusted, p)
	}
	if cfg.KeysFile == "" {
		return nil, errors.New("guard.keys_file is required: the guard refuses every request without keys")
	}
	maxConns, err := connectionCap(cfg.MaxConnections, g.fdBudget)
	if err != nil {
		return nil, config.Setting("guard.max_connections", err)
	}
	s.maxConns = maxConns
	if s.policy, err = CompilePolicy(pol); err != nil {
		return nil, err
	}
	s.policyCfg = pol
	return s, nil
}

// CheckMaxConnections tells whether max_connections (0: the default) fits
// in budget descriptors (0: no limit), as New and Prepare decide it.
func CheckMaxConnections(maxConnections, budget int) error {
	_, err := connectionCap(maxConnections, budget)
	return err
}

// connectionCap is the effective max_connections: the configured value, or
// the default lowered to what budget descriptors allow (each client
// connection may hold an upstream connection too). An explicit value the
// budget cannot hold is an error.
func connectionCap(configured, budget int) (int, error) {
	if configured > 0 {
		if budget > 0 && 2*configured > budget {
			return 0, fmt.Errorf("guard.max_connections = %d needs about %d file descriptors (client and upstream side) but only %d are left under RLIMIT_NOFILE after glmctl's reserve: raise LimitNOFILE= (or ulimit -n), or lower max_connections to %d", configured, 2*configured, budget, budget/2)
		}
		return configured, nil
	}
	n := config.DefaultMaxConnections
	if budget > 0 && 2*n > budget {
		n = max(budget/2, 1)
	}
	return n, nil
}

// loaded is the result of reading one file.
type loaded struct {
	path  string
	src   []byte
	sum   [sha256.Size]byte
	warns int
	err   error // read or parse error, with path and line:col
}

func loadFile(path string) loaded {
	l := loaded{path: path}
	l.src, l.err = os.ReadFile(path)
	if l.err == nil {
		l.sum = sha256.Sum256(l.src)
	}
	return l
}

// parseKeys reads the keys file at path.
func (g *Guard) parseKeys(path string) (*keys.File, loaded) {
	l := loadFile(path)
	if l.err != nil {
		l.err = fmt.Errorf("keys file: %w", l.err)
		return nil, l
	}
	f, warns, err := keys.Parse(l.src)
	for _, w := range warns {
		g.log.Warn("keys file: "+w.Msg, "file", path, "line", w.Line, "col", w.Col)
	}
	l.warns = len(warns)
	if err != nil {
		l.err = fmt.Errorf("keys file: %w", jsonc.InFile(path, err))
		return nil, l
	}
	return f, l
}

// parseLimits reads the limits file at path ("" = no limits file).
func (g *Guard) parseLimits(path string) (*Limits, loaded) {
	if path == "" {
		return &Limits{}, loaded{}
	}
	l := loadFile(path)
	if l.err != nil {
		l.err = fmt.Errorf("limits file: %w", l.err)
		return nil, l
	}
	lim, warns, err := ParseLimits(l.src)
	for _, w := range warns {
		g.log.Warn("limits file: "+w, "file", path)
	}
	l.warns = len(warns)
	if err != nil {
		l.err = fmt.Errorf("limits file: %w", jsonc.InFile(path, err))
		return nil, l
	}
	return lim, l
}

// Pending is a guard configuration that has been read and checked in full
// but not yet put in force (see Prepare).
type Pending struct {
	g       *Guard
	s       *settings
	keysL   loaded
	limitsL loaded
}

// Prepare reads and checks everything a new guard config block needs (its
// settings, keys and limits files) without changing what is in force. It
// fails, changing nothing, when any of it is invalid or when the block
// changes a setting only a restart applies (errors.Is ErrRestartRequired,
// naming each such setting).
func (g *Guard) Prepare(cfg *config.Guard, pol *config.Policy) (*Pending, error) {
	cur := g.snap.Load()
	if changed := restartOnly(cur.cfg, cfg); len(changed) > 0 {
		return nil, fmt.Errorf("%w: %s changed; restart glmctl to apply (nothing was reloaded)", ErrRestartRequired, strings.Join(changed, ", "))
	}
	s, err := g.staticSettings(cfg, pol)
	if err != nil {
		return nil, err
	}
	f, kl := g.parseKeys(cfg.KeysFile)
	lim, ll := g.parseLimits(cfg.LimitsFile)
	if err := errors.Join(kl.err, ll.err); err != nil {
		return nil, err
	}
	s.keyFile, s.keys, s.limits = f, keys.NewSet(f), lim
	return &Pending{g: g, s: s, keysL: kl, limitsL: ll}, nil
}

// Commit puts a prepared configuration in force in one atomic swap and
// records what changed (admin audit records, reload metrics, file states).
func (p *Pending) Commit() {
	g := p.g
	g.reload.Lock()
	prev := g.snap.Load()
	g.install(p.s)
	g.noteLoad(p.keysL, len(p.s.keyFile.Entries))
	if p.limitsL.path != "" {
		g.noteLoad(p.limitsL, len(p.s.limits.PerKey))
	}
	recs := keyChanges(prev.keyFile, p.s.keyFile)
	g.reload.Unlock()
	g.retargetWatch()
	g.writeAdmin(recs)
}

// install stores s as the settings in force (g.reload held) and follows it
// with the per-key state that hangs off it.
func (g *Guard) install(s *settings) {
	prev := g.snap.Load()
	g.snap.Store(s)
	g.conns.setCaps(s.maxConns, s.maxUnauth, s.trusted)
	if prev == nil || prev.policy != s.policy {
		g.m.setPolicy(s.policy)
	}
	if prev == nil || prev.keyFile != s.keyFile {
		g.m.setKeys(s.keyFile)
		if err := g.store.Retain(context.Background(), s.keys.Has); err != nil {
			g.log.Warn("could not forget limit state of removed keys", "error", err)
		}
	}
}

// noteLoad records a successful load of a file (g.reload held).
func (g *Guard) noteLoad(l loaded, entries int) {
	st := g.fileState(l.path)
	st.SHA256, st.LoadedAt = hex.EncodeToString(l.sum[:]), time.Now()
	st.Error, st.ErrorAt, st.Entries, st.Warnings, st.missing = "", time.Time{}, entries, l.warns, false
	g.m.reloaded(l.path, true)
}

// noteFailure records a failed load of a file (g.reload held).
func (g *Guard) noteFailure(l loaded) {
	st := g.fileState(l.path)
	st.Error, st.ErrorAt = l.err.Error(), time.Now()
	st.missing = errors.Is(l.err, os.ErrNotExist)
	g.m.reloaded(l.path, false)
}

func (g *Guard) fileState(path string) *FileState {
	st := g.files[path]
	if st == nil {
		st = &FileState{Path: path}
		g.files[path] = st
	}
	return st
}

// Reload re-reads the keys and limits files (and the TLS certificate) named
// by the config in force. Each file stands alone: one that cannot be read
// or does not parse keeps its previous content in force, and the error says
// why, with line:col. A file whose content did not change is not parsed
// again but its load still counts as successful.
func (g *Guard) Reload() error {
	g.reload.Lock()
	cur := g.snap.Load()
	next := *cur
	var recs []*audit.Record
	var errs []error

	if r, err := g.reloadKeys(&next); err != nil {
		errs = append(errs, err)
		recs = append(recs, r...)
	} else {
		recs = append(recs, r...)
	}
	if rec, err := g.reloadLimits(&next); err != nil || rec != nil {
		errs = append(errs, err)
		if rec != nil {
			recs = append(recs, rec)
		}
	}
	if next.keyFile != cur.keyFile || next.limits != cur.limits {
		g.install(&next)
	}
	g.reload.Unlock()
	if cur.cfg.TLS != nil {
		errs = append(errs, g.loadTLS(false))
	}
	g.writeAdmin(recs)
	return errors.Join(errs...)
}

// reloadKeys re-reads the keys file into next (g.reload held).
func (g *Guard) reloadKeys(next *settings) ([]*audit.Record, error) {
	path := next.cfg.KeysFile
	st := g.fileState(path)
	l := loadFile(path)
	if l.err == nil && st.SHA256 == hex.EncodeToString(l.sum[:]) {
		if st.Error != "" {
			g.log.Info("keys file is back to the content in force", "file", path)
		}
		g.noteLoad(l, st.Entries) // unchanged, but this load succeeded
		return nil, nil
	}
	f, l := g.parseKeys(path)
	if l.err != nil {
		repeated := st.Error == l.err.Error()
		g.noteFailure(l)
		if repeated { // logged and recorded when it first failed so
			return nil, l.err
		}
		g.log.Error("keys file not loaded; keeping the previous keys", "file", path, "error", l.err)
		return []*audit.Record{{Stage: audit.StageAdmin, Action: ActionKeysInvalid, Target: path, Error: l.err.Error()}}, l.err
	}
	recs := keyChanges(next.keyFile, f)
	next.keyFile, next.keys = f, keys.NewSet(f)
	g.noteLoad(l, len(f.Entries))
	g.log.Info("keys reloaded", "file", path, "keys", next.keys.Len(), "changes", len(recs))
	return recs, nil
}

// reloadLimits re-reads the limits file into next (g.reload held).
func (g *Guard) reloadLimits(next *settings) (*audit.Record, error) {
	path := next.cfg.LimitsFile
	if path == "" {
		return nil, nil
	}
	st := g.fileState(path)
	l := loadFile(path)
	if l.err == nil && st.SHA256 == hex.EncodeToString(l.sum[:]) {
		g.noteLoad(l, st.Entries)
		return nil, nil
	}
	lim, l := g.parseLimits(path)
	if l.err != nil {
		repeated := st.Error == l.err.Error()
		g.noteFailure(l)
		if repeated {
			return nil, l.err
		}
		g.log.Error("limits file not loaded; keeping the previous limits", "file", path, "error", l.err)
		return &audit.Record{Stage: audit.StageAdmin, Action: ActionLimitsFailed, Target: path, Error: l.err.Error()}, l.err
	}
	next.limits = lim
	g.noteLoad(l, len(lim.PerKey))
	g.log.Info("limits reloaded", "file", path, "entries", len(lim.PerKey))
	return &audit.Record{Stage: audit.StageAdmin, Action: ActionLimitsLoaded, Target: path}, nil
}

// Files reports the state of every file the guard loads, keys file first.
func (g *Guard) Files() []FileState {
	g.reload.Lock()
	defer g.reload.Unlock()
	s := g.snap.Load()
	var out []FileState
	for _, p := range []string{s.cfg.KeysFile, s.cfg.LimitsFile} {
		if st := g.files[p]; p != "" && st != nil {
			out = append(out, *st)
		}
	}
	if s.cfg.TLS != nil {
		if st := g.files[s.cfg.TLS.Cert]; st != nil {
			out = append(out, *st)
		}
	}
	return out
}

// Healthy reports whether every file the guard loads was loaded by its last
// attempt (false: an old version stays in force; see Files).
func (g *Guard) Healthy() bool {
	for _, f := range g.Files() {
		if f.Error != "" {
			return false
		}
	}
	return true
}
