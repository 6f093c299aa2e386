package guard

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/glmctl/glmctl/internal/config"
)

// ErrStoreUnavailable is wrapped by every error of a shared limits store
// that could not reach its backend (Redis down, unreachable, loading,
// failing over): errors.Is(err, ErrStoreUnavailable) is the guard's cue for
// limits_store_failure ("closed": 503 + Retry-After, "open": admit under the
// in-process limiter). Other errors (a wrong password, a script error, a
// refused command) are configuration problems and do not wrap it.
var ErrStoreUnavailable = errors.New("limits store unavailable")

var errStoreClosed = errors.New("limits store closed")

// RedisOptionsFor is the store options a guard block's limits_store_*
// settings give (no logger, default prefix and lease).
func RedisOptionsFor(g *config.Guard) RedisOptions {
	return RedisOptions{URL: g.LimitsStore, PasswordFile: g.LimitsStorePasswordFile,
		CAFile: g.LimitsStoreCAFile, CertFile: g.LimitsStoreCertFile, KeyFile: g.LimitsStoreKeyFile}
}

// RedisOptions configures NewRedisStore.
type RedisOptions struct {
	// URL is guard.limits_store (see ParseRedisURL): redis://, rediss://
	// (TLS) or unix:// for one server; Sentinel with ?master_name=…; Cluster
	// with ?cluster=true or more than one ?addr=….
	URL string
	// PasswordFile holds the Redis password (its first line); it is read
	// again for every new connection, so a rotated password is picked up
	// without a restart. A URL that carries a password too is refused.
	PasswordFile string
	// CAFile holds the PEM certificates that sign the server's (rediss://
	// only); default: the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for a
	// rediss:// server that asks for one (tls-auth-clients); both or
	// neither. They are read again for every new connection.
	CertFile, KeyFile string
	// Prefix begins every Redis key name (default "glmctl"); boxes that
	// share limits use the same one. It may not contain { or }.
	Prefix string
	// LeaseTime is how long a concurrency slot outlives a guard that stopped
	// renewing it (killed, or cut off from Redis); default 30 s. The store
	// renews the slots it holds every third of it.
	LeaseTime time.Duration
	// MaxPending bounds the settlements (Finish, Cancel) kept in memory
	// while Redis is unreachable; default 10000. Beyond it a settlement is
	// dropped, counted and logged.
	MaxPending int
	// Logger gets one line per change of reachability; nil: none.
	Logger hclog.Logger

	// now replaces Redis TIME in the scripts (tests only: a fake clock).
	now func() time.Time
}

// Lua scripts: a shared prelude (clock, GCRA, token bucket, expiry) and one
// script per operation. See the .lua files.
var (
	//go:embed redis_lib.lua
	luaLib string
	//go:embed redis_admit.lua
	luaAdmit string
	//go:embed redis_settle.lua
	luaSettle string
	//go:embed redis_renew.lua
	luaRenew string
	//go:embed redis_peek.lua
	luaPeek string

	scriptAdmit  = redis.NewScript(luaLib + luaAdmit)
	scriptSettle = redis.NewScript(luaLib + luaSettle)
	scriptRenew  = redis.NewScript(luaLib + luaRenew)
	scriptPeek   = redis.NewScript(luaLib + luaPeek)
)

// RedisStore is a Store shared by every guard that points at one Redis: the
// same limits as MemoryStore, exact across boxes. Each decision is one Lua
// script, run atomically by Redis on its own clock (TIME), that evaluates
// every limit that applies and takes all of them or none.
//
// Redis keys, per API key K (one Cluster hash slot per key):
//
//	{prefix:K}:s  hash: GCRA theoretical arrival time, token bucket level, its time and capacity
//	{prefix:K}:l  sorted set: leases of K's admitted requests (id → expiry)
//
// and for the global limits, under their own tag:
//
//	{prefix}:g:s  hash: global GCRA theoretical arrival time
//	{prefix}:g:l  sorted set: leases of every admitted request under a global limit
//
// Every admitted request holds a lease (its id → expiry) in the sorted set
// of each part (key, global) that limited it: concurrency is the number of
// live leases, an Admit drops the expired ones first, the store renews the
// leases it holds every LeaseTime/3, so a guard that dies frees its slots
// within LeaseTime. Finish and Cancel remove the lease first and apply the
// rest only if it was there: a settlement retried after a lost reply is not
// applied twice. State expires once it is equal to a fresh one (GCRA time
// in the past, bucket full, no lease), so idle keys cost nothing.
//
// On Redis Cluster the key part and the global part live in different hash
// slots: a request under both runs two scripts, the key's first then the
// global's, and the key's is undone when the global refuses. No limit is
// ever exceeded; while a request refused by a global limit is being undone,
// its key's limits look one request fuller to the key's other requests (a
// refusal, never an over-admission). Without global limits, or off
// Cluster, a decision is one script.
type RedisStore struct {
	target     *redisTarget
	prefix     string
	lease      time.Duration
	maxPending int
	now        func() time.Time
	log        hclog.Logger
	id         string // this store's part of lease ids
	seq        atomic.Uint64

	client  atomic.Pointer[redisClient]
	up      atomic.Bool
	lastErr atomic.Pointer[string]

	mu         sync.Mutex
	held       map[string][]string // live lease ids per API key
	heldGlobal []string
	pending    []*settlement

	kick      chan struct{} // wakes run: gone down, or a settlement queued
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	m redisMetrics
}

type redisClient struct{ c redis.UniversalClient }

// quietRedis silences go-redis's own logger (one process-wide setting, on
// stderr by default): it would print every failed dial while Redis is
// down. The store logs each change of reachability once itself.
var quietRedis sync.Once

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// NewRedisStore connects nothing yet: it checks opts and starts the
// store's background work (lease renewal, reconnection, queued
// settlements); Close stops it. A Redis that cannot be reached shows in the
// first decision's error (ErrStoreUnavailable); Ping checks it now.
func NewRedisStore(opts RedisOptions) (*RedisStore, error) {
	target, err := parseRedisTarget(opts)
	if err != nil {
		return nil, err
	}
	quietRedis.Do(func() { redis.SetLogger(discardRedisLog{}) })
	s := &RedisStore{
		target:     target,
		prefix:     opts.Prefix,
		lease:      opts.LeaseTime,
		maxPending: opts.MaxPending,
		now:        opts.now,
		log:        opts.Logger,
		held:       map[string][]string{},
		kick:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		m:          newRedisMetrics(),
	}
	if s.prefix == "" {
		s.prefix = "glmctl"
	}
	for _, r := range s.prefix {
		if r == '{' || r == '}' {
			return nil, fmt.Errorf("limits store prefix %q: { and } are Redis Cluster hash-tag marks", s.prefix)
		}
	}
	if s.lease <= 0 {
		s.lease = 30 * time.Second
	}
	if s.lease < 3*time.Millisecond {
		return nil, fmt.Errorf("limits store lease time %v: too short", s.lease)
	}
	if s.maxPending <= 0 {
		s.maxPending = 10000
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s.id = hex.EncodeToString(b[:])
	s.client.Store(&redisClient{target.newClient()})
	s.up.Store(true)
	s.m.up.Set(1)
	s.wg.Add(1)
	go s.run()
	return s, nil
}

// LeaseTime is how long a concurrency slot outlives a guard that stopped
// renewing it.
func (s *RedisStore) LeaseTime() time.Duration { return s.lease }

// String names the store for logs and status, without its password.
func (s *RedisStore) String() string { return s.target.display }

// Up tells whether the last operation reached Redis (for glmctl status).
func (s *RedisStore) Up() bool { return s.up.Load() }

// Ping checks that Redis answers and runs this store's scripts (some
// managed Redis services refuse Lua): glmctl check.
func (s *RedisStore) Ping(ctx context.Context) error {
	c := s.client.Load().c
	if err := c.Ping(ctx).Err(); err != nil {
		return s.classify(ctx, "ping", err)
	}
	for _, sc := range []*redis.Script{scriptAdmit, scriptSettle, scriptRenew, scriptPeek} {
		if err := sc.Load(ctx, c).Err(); err != nil {
			return s.classify(ctx, "ping", err)
		}
	}
	return nil
}

// Retain implements Store. It forgets nothing: Redis state expires by
// itself once idle, and a key missing from this box's keys file may be
// valid on another box whose file is newer.
func (s *RedisStore) Retain(context.Context, func(string) bool) error { return nil }

// Close stops renewing leases (the slots still held come back after
// LeaseTime, as if the box had died), makes a last attempt within ctx at
// the queued settlements and closes the connections. Decisions after Close
// fail.
func (s *RedisStore) Close(ctx context.Context) error {
	first := false
	s.closeOnce.Do(func() { first = true; close(s.done) })
	if !first {
		return nil
	}
	s.wg.Wait()
	s.drain(ctx)
	s.mu.Lock()
	left := len(s.pending)
	s.mu.Unlock()
	err := s.client.Load().c.Close()
	if left > 0 {
		s.m.dropped.Add(float64(left))
		s.log.Error("limits store closed with settlements not applied", "store", s.target.display, "count", left)
		return fmt.Errorf("limits store: %d settlements could not be applied before closing", left)
	}
	return err
}

// Collectors are the store's metrics, for the guard's registerer:
// glmctl_guard_limits_store_up, _errors_total{op}, _settlements_pending,
// _settlements_dropped_total, _settlements_skipped_total and
// _admit_duration_seconds.
func (s *RedisStore) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.m.up, s.m.errors, s.m.pending, s.m.dropped, s.m.skipped, s.m.admit}
}

// keys returns the Redis keys of API key k: its state hash and lease set.
// Both carry the hash tag {prefix:k}, so they are in one Cluster slot.
func (s *RedisStore) keys(k string) (state, leases string) {
	tag := "{" + s.prefix + ":" + k + "}"
	return tag + ":s", tag + ":l"
}

// globalKeys returns the Redis keys of the global limits.
func (s *RedisStore) globalKeys() (state, leases string) {
	tag := "{" + s.prefix + "}"
	return tag + ":g:s", tag + ":g:l"
}

func (s *RedisStore) nowArg() string {
	if s.now == nil {
		return ""
	}
	return strconv.FormatInt(s.now().UnixMicro(), 10)
}

func (s *RedisStore) newLease() string {
	return s.id + ":" + strconv.FormatUint(s.seq.Add(1), 36)
}

// conn returns the client to use, or ErrStoreUnavailable at once while
// Redis is known to be unreachable (run probes it in the background).
func (s *RedisStore) conn() (redis.UniversalClient, error) {
	if !s.up.Load() {
		why := ""
		if p := s.lastErr.Load(); p != nil {
			why = ": " + *p
		}
		return nil, fmt.Errorf("%w (%s%s)", ErrStoreUnavailable, s.target.display, why)
	}
	return s.client.Load().c, nil
}

// closed returns errStoreClosed once Close was called.
func (s *RedisStore) closed() error {
	select {
	case <-s.done:
		return errStoreClosed
	default:
		return nil
	}
}

// ticketFor is the ticket of an admitted a, as MemoryStore writes it.
func ticketFor(a Ask) Ticket {
	t := Ticket{Key: a.Key, Concurrency: a.Limit.Concurrency > 0, GlobalConcurrency: a.Global.Concurrency > 0}
	if a.Limit.RPM > 0 {
		t.RPM = a.Limit.RPM
	}
	if a.Global.RPM > 0 {
		t.GlobalRPM = a.Global.RPM
	}
	if a.Limit.TPM > 0 {
		t.Tokens = max(a.Tokens, 0)
	}
	return t
}

// keyLeased and globalLeased tell whether an admission with ticket t took
// something of the key's (of the global) state, so holds a lease there.
func keyLeased(t Ticket) bool    { return t.RPM > 0 || t.Tokens > 0 || t.Concurrency }
func globalLeased(t Ticket) bool { return t.GlobalRPM > 0 || t.GlobalConcurrency }

// Admit implements Store.
func (s *RedisStore) Admit(ctx context.Context, a Ask) (Decision, error) {
	kp := a.Limit.RPM > 0 || a.Limit.TPM > 0 || a.Limit.Concurrency > 0
	gp := a.Global.RPM > 0 || a.Global.Concurrency > 0
	t := ticketFor(a)
	if !kp && !gp {
		return Decision{Allowed: true, Ticket: t}, nil
	}
	if err := s.closed(); err != nil {
		return Decision{}, err
	}
	c, err := s.conn()
	if err != nil {
		return Decision{}, err
	}
	var kl, gl string
	if keyLeased(t) {
		kl = s.newLease()
	}
	if globalLeased(t) {
		gl = s.newLease()
	}
	start := time.Now()
	var d Decision
	if s.target.cluster && kp && gp {
		d, err = s.admitCluster(ctx, c, a, kl, gl)
	} else {
		d, err = s.runAdmit(ctx, c, a, kp, gp, kl, gl)
	}
	s.m.admit.Observe(time.Since(start).Seconds())
	if err != nil || !d.Allowed {
		return d, err
	}
	d.Ticket = t
	s.mu.Lock()
	if kl != "" {
		s.held[a.Key] = append(s.held[a.Key], kl)
	}
	if gl != "" {
		s.heldGlobal = append(s.heldGlobal, gl)
	}
	s.mu.Unlock()
	return d, nil
}

// runAdmit runs the admit script over the key part (kp), the global part
// (gp) or both.
func (s *RedisStore) runAdmit(ctx context.Context, c redis.UniversalClient, a Ask, kp, gp bool, kl, gl string) (Decision, error) {
	keys := make([]string, 0, 4)
	parts := ""
	if kp {
		st, ls := s.keys(a.Key)
		keys = append(keys, st, ls)
		parts += "k"
	} else {
		kl = ""
	}
	if gp {
		st, ls := s.globalKeys()
		keys = append(keys, st, ls)
		parts += "g"
	} else {
		gl = ""
	}
	res, err := scriptAdmit.Run(ctx, c, keys, s.nowArg(), s.lease.Microseconds(),
		a.Limit.RPM, a.Limit.TPM, a.Limit.Concurrency, max(a.Tokens, 0), kl,
		a.Global.RPM, a.Global.Concurrency, gl, parts).Slice()
	if err != nil {
		return Decision{}, s.classify(ctx, "admit", err)
	}
	if len(res) != 9 {
		return Decision{}, fmt.Errorf("limits store: admit: unexpected reply %v", res)
	}
	n := func(i int) int64 { v, _ := res[i].(int64); return v }
	us := func(i int) time.Duration { return time.Duration(n(i)) * time.Microsecond }
	reason, _ := res[1].(string)
	return Decision{
		Allowed:    n(0) == 1,
		Reason:     reason,
		RetryAfter: us(2),
		Status: RateStatus{
			LimitRequests: n(3), RemainingRequests: n(4), ResetRequests: us(5),
			LimitTokens: n(6), RemainingTokens: n(7), ResetTokens: us(8),
		},
	}, nil
}

// admitCluster decides a request under key and global limits on Redis
// Cluster, where the two parts live in different slots: the key's part
// first (it reports request_too_large before anything else), then the
// global part; a global refusal or error undoes the key's part.
func (s *RedisStore) admitCluster(ctx context.Context, c redis.UniversalClient, a Ask, kl, gl string) (Decision, error) {
	dk, err := s.runAdmit(ctx, c, a, true, false, kl, "")
	if err != nil || !dk.Allowed {
		return dk, err
	}
	dg, err := s.runAdmit(ctx, c, a, false, true, "", gl)
	if err == nil && dg.Allowed {
		if a.Limit.RPM == 0 {
			dk.Status.LimitRequests, dk.Status.RemainingRequests, dk.Status.ResetRequests =
				dg.Status.LimitRequests, dg.Status.RemainingRequests, dg.Status.ResetRequests
		}
		return dk, nil
	}
	if kl != "" {
		t := ticketFor(a)
		undo := &settlement{cancel: true, key: a.Key, reserved: t.Tokens, rpm: t.RPM, keyLease: kl}
		_ = s.settle(context.WithoutCancel(ctx), undo)
	}
	if err != nil {
		return Decision{}, err
	}
	if a.Limit.RPM > 0 {
		dg.Status.LimitRequests, dg.Status.RemainingRequests, dg.Status.ResetRequests =
			dk.Status.LimitRequests, dk.Status.RemainingRequests, dk.Status.ResetRequests
	}
	dg.Status.LimitTokens, dg.Status.RemainingTokens, dg.Status.ResetTokens =
		dk.Status.LimitTokens, dk.Status.RemainingTokens, dk.Status.ResetTokens
	return dg, nil
}

// Peek implements Peeker.
func (s *RedisStore) Peek(ctx context.Context, key string, l Limit, g GlobalLimit) (RateStatus, error) {
	kp := l.RPM > 0 || l.TPM > 0
	gp := l.RPM == 0 && g.RPM > 0
	if !kp && !gp {
		return RateStatus{}, nil
	}
	if err := s.closed(); err != nil {
		return RateStatus{}, err
	}
	c, err := s.conn()
	if err != nil {
		return RateStatus{}, err
	}
	if s.target.cluster && kp && gp {
		rk, err := s.runPeek(ctx, c, key, l, g, true, false)
		if err != nil {
			return rk, err
		}
		rg, err := s.runPeek(ctx, c, key, l, g, false, true)
		rk.LimitRequests, rk.RemainingRequests, rk.ResetRequests = rg.LimitRequests, rg.RemainingRequests, rg.ResetRequests
		return rk, err
	}
	return s.runPeek(ctx, c, key, l, g, kp, gp)
}

// scriptSlots counts a key's unexpired concurrency leases (ARGV[1]: now in
// µs, or empty for Redis's clock, as the other scripts).
var scriptSlots = redis.NewScript(`
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.0f', now), '+inf')`)

// SlotsInUse implements SlotCounter: the key's leases that have not
// expired, whichever guard holds them.
func (s *RedisStore) SlotsInUse(ctx context.Context, key string) (int64, error) {
	if err := s.closed(); err != nil {
		return 0, err
	}
	c, err := s.conn()
	if err != nil {
		return 0, err
	}
	_, leases := s.keys(key)
	n, err := scriptSlots.Run(ctx, c, []string{leases}, s.nowArg()).Int64()
	if err != nil {
		return 0, s.classify(ctx, "slots", err)
	}
	return n, nil
}

func (s *RedisStore) runPeek(ctx context.Context, c redis.UniversalClient, key string, l Limit, g GlobalLimit, kp, gp bool) (RateStatus, error) {
	var keys []string
	parts := ""
	if kp {
		st, _ := s.keys(key)
		keys = append(keys, st)
		parts += "k"
	}
	if gp {
		st, _ := s.globalKeys()
		keys = append(keys, st)
		parts += "g"
	}
	res, err := scriptPeek.Run(ctx, c, keys, s.nowArg(), l.RPM, l.TPM, g.RPM, parts).Int64Slice()
	if err != nil {
		return RateStatus{}, s.classify(ctx, "peek", err)
	}
	if len(res) != 6 {
		return RateStatus{}, fmt.Errorf("limits store: peek: unexpected reply %v", res)
	}
	return RateStatus{
		LimitRequests: res[0], RemainingRequests: res[1], ResetRequests: time.Duration(res[2]) * time.Microsecond,
		LimitTokens: res[3], RemainingTokens: res[4], ResetTokens: time.Duration(res[5]) * time.Microsecond,
	}, nil
}

// settlement is a Finish or Cancel on its way to Redis. The lease ids
// identify it there: applying it twice changes nothing the second time.
type settlement struct {
	cancel      bool
	key         string
	reserved    int64
	used        int64
	rpm         int64
	grpm        int64
	keyLease    string // "" once applied, or when the admission had none
	globalLease string
}

// Finish implements Store. A settlement that cannot reach Redis is queued
// and retried in the background (nil is returned); only one that cannot be
// queued (MaxPending reached) or that Redis refuses is an error.
func (s *RedisStore) Finish(ctx context.Context, t Ticket, used int64) error {
	if used < 0 {
		used = t.Tokens
	}
	return s.end(ctx, t, false, used)
}

// Cancel implements Store, as Finish does.
func (s *RedisStore) Cancel(ctx context.Context, t Ticket) error {
	return s.end(ctx, t, true, 0)
}

// end takes one of this store's leases of t's key (the leases of one key
// held by one store are interchangeable: each stands for one admitted
// request) and settles.
func (s *RedisStore) end(ctx context.Context, t Ticket, cancel bool, used int64) error {
	if err := s.closed(); err != nil {
		if keyLeased(t) || globalLeased(t) {
			s.m.dropped.Inc()
		}
		return err
	}
	op := &settlement{cancel: cancel, key: t.Key, reserved: t.Tokens, used: used, rpm: t.RPM, grpm: t.GlobalRPM}
	s.mu.Lock()
	if keyLeased(t) {
		if ids := s.held[t.Key]; len(ids) > 0 {
			op.keyLease = ids[len(ids)-1]
			if len(ids) == 1 {
				delete(s.held, t.Key)
			} else {
				s.held[t.Key] = ids[:len(ids)-1]
			}
		}
	}
	if globalLeased(t) && len(s.heldGlobal) > 0 {
		op.globalLease = s.heldGlobal[len(s.heldGlobal)-1]
		s.heldGlobal = s.heldGlobal[:len(s.heldGlobal)-1]
	}
	s.mu.Unlock()
	if op.keyLease == "" && op.globalLease == "" {
		return nil // nothing of Redis's was taken
	}
	return s.settle(ctx, op)
}

// settle applies op now, or queues it when Redis cannot be reached.
func (s *RedisStore) settle(ctx context.Context, op *settlement) error {
	err := s.apply(ctx, op)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrStoreUnavailable) && ctx.Err() == nil {
		return err
	}
	s.mu.Lock()
	if len(s.pending) >= s.maxPending {
		s.mu.Unlock()
		s.m.dropped.Inc()
		s.log.Error("limits store: settlement dropped, too many waiting for Redis", "store", s.target.display, "key", op.key, "waiting", s.maxPending)
		return fmt.Errorf("limits store: settlement of %q dropped, %d already waiting: %w", op.key, s.maxPending, err)
	}
	s.pending = append(s.pending, op)
	s.m.pending.Set(float64(len(s.pending)))
	s.mu.Unlock()
	s.poke()
	return nil
}

// apply runs the settle script for what is left of op: both parts at once,
// or on Cluster one part after the other (each in its own slot).
func (s *RedisStore) apply(ctx context.Context, op *settlement) error {
	c, err := s.conn()
	if err != nil {
		return err
	}
	if s.target.cluster && op.keyLease != "" && op.globalLease != "" {
		if err := s.runSettle(ctx, c, op, true, false); err != nil {
			return err
		}
		return s.runSettle(ctx, c, op, false, true)
	}
	return s.runSettle(ctx, c, op, op.keyLease != "", op.globalLease != "")
}

func (s *RedisStore) runSettle(ctx context.Context, c redis.UniversalClient, op *settlement, kp, gp bool) error {
	keys := make([]string, 0, 4)
	parts := ""
	if kp {
		st, ls := s.keys(op.key)
		keys = append(keys, st, ls)
		parts += "k"
	}
	if gp {
		st, ls := s.globalKeys()
		keys = append(keys, st, ls)
		parts += "g"
	}
	mode := "finish"
	if op.cancel {
		mode = "cancel"
	}
	res, err := scriptSettle.Run(ctx, c, keys, s.nowArg(), mode, op.keyLease, op.globalLease,
		op.reserved, op.used, op.rpm, op.grpm, parts).Int64Slice()
	if err != nil {
		return s.classify(ctx, mode, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("limits store: %s: unexpected reply %v", mode, res)
	}
	if kp {
		op.keyLease = ""
		if res[0] == 0 {
			s.m.skipped.Inc()
		}
	}
	if gp {
		op.globalLease = ""
		if res[1] == 0 {
			s.m.skipped.Inc()
		}
	}
	return nil
}

// classify wraps err from Redis: ErrStoreUnavailable for everything that
// says Redis cannot be used now (and the store goes down until a probe
// succeeds); the caller's own cancellation as it is.
func (s *RedisStore) classify(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("limits store: %s: %w", op, err)
	}
	s.m.errors.WithLabelValues(op).Inc()
	if !redisUnavailable(err) {
		return fmt.Errorf("limits store: %s: %w", op, err)
	}
	s.markDown(err)
	return fmt.Errorf("limits store: %s: %w (%s): %w", op, ErrStoreUnavailable, s.target.display, err)
}

// redisUnavailable tells whether err means "Redis cannot be used now":
// anything but an error reply or a certificate that does not verify, and
// the replies of a server that is loading, failing over, full or read-only.
func redisUnavailable(err error) bool {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return false // reachable, but not the server it claims to be, or a CA is missing
	}
	var re redis.Error
	if !errors.As(err, &re) {
		return true // network, timeout, pool, closed client
	}
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) || redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) || redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) ||
		redis.IsOOMError(err) || redis.IsNoReplicasError(err)
}

func (s *RedisStore) markDown(err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
	if s.up.CompareAndSwap(true, false) {
		s.m.up.Set(0)
		s.log.Error("limits store unreachable", "store", s.target.display, "error", err)
		s.poke()
	}
}

func (s *RedisStore) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

var (
	_ Store  = (*RedisStore)(nil)
	_ Peeker = (*RedisStore)(nil)
)
