package guard

import (
	"context"
	"math"
	"sync"
	"time"
)

// Limit is the set of limits that applies to one key; 0 means unlimited.
type Limit struct {
	RPM         int64 `json:"rpm"`
	TPM         int64 `json:"tpm"`
	Concurrency int64 `json:"concurrency"`
}

// GlobalLimit applies to all requests together; 0 means unlimited.
type GlobalLimit struct {
	RPM         int64
	Concurrency int64
}

// Ask is one admission question: may this key send a request that reserves
// Tokens tokens, under these limits?
type Ask struct {
	Key    string
	Limit  Limit
	Global GlobalLimit
	Tokens int64
}

// Reasons a request is refused, as they appear in the audit record's limit
// field and in metrics.
const (
	ReasonGlobalRPM         = "global_rpm"
	ReasonGlobalConcurrency = "global_concurrency"
	ReasonRPM               = "rpm"
	ReasonTPM               = "tpm"
	ReasonConcurrency       = "concurrency"
	ReasonTooLarge          = "request_too_large"
)

// RateStatus is what the x-ratelimit-* headers report. A zero limit means
// that dimension is unlimited and its headers are left out.
type RateStatus struct {
	LimitRequests     int64
	RemainingRequests int64
	ResetRequests     time.Duration // until the request budget is full again
	LimitTokens       int64
	RemainingTokens   int64
	ResetTokens       time.Duration // until the token budget is full again
}

// Ticket is the receipt of an admitted request, handed back to Finish or
// Cancel exactly once.
type Ticket struct {
	Key               string
	Tokens            int64 // reserved
	RPM               int64 // key rpm the request was charged under (0: none)
	GlobalRPM         int64
	Concurrency       bool // a key concurrency slot is held
	GlobalConcurrency bool // a global concurrency slot is held
}

// Decision is the answer to an Ask.
type Decision struct {
	Allowed    bool
	Reason     string        // set when refused: which limit
	RetryAfter time.Duration // set when refused
	Ticket     Ticket        // valid when Allowed
	Status     RateStatus
}

// Store decides admissions. One call to Admit takes every limit that applies
// (global rpm and concurrency, key rpm, tpm and concurrency) together or none
// of them, atomically; a refused request changes nothing. A shared
// implementation (Redis, one Lua script per call) can satisfy the same
// interface.
type Store interface {
	// Admit takes every limit that applies to a, or none.
	Admit(ctx context.Context, a Ask) (Decision, error)
	// Finish ends an admitted request: it settles the token reservation to
	// used tokens (used < 0: charge the whole reservation) and releases the
	// concurrency slots. The request itself stays counted.
	Finish(ctx context.Context, t Ticket, used int64) error
	// Cancel undoes an admission whose request never reached the upstream
	// (for example the audit record could not be written).
	Cancel(ctx context.Context, t Ticket) error
	// Retain forgets the state of every key for which keep is false.
	Retain(ctx context.Context, keep func(key string) bool) error
}

// MemoryStore is the in-process Store: GCRA for requests per minute (one
// theoretical arrival time per key, no window edges, a full minute's budget
// available at once after a minute idle), a debit/credit token bucket for
// tokens per minute (reserve up front, refund or charge the difference on
// settling), and counters for concurrency, all under one mutex.
type MemoryStore struct {
	now func() time.Time

	mu     sync.Mutex
	keys   map[string]*keyState
	global windowState
}

type windowState struct {
	tat      time.Time // GCRA theoretical arrival time
	inflight int64
}

type keyState struct {
	windowState
	tokens   float64 // token bucket level; may go below 0 after an overrun
	tokensAt time.Time
	tokenCap int64 // capacity the level was last computed under
}

// NewMemoryStore returns an empty in-process store. now may be nil (time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{now: now, keys: map[string]*keyState{}}
}

const period = time.Minute

// gcra evaluates one GCRA step at now for a limit of n per minute.
func gcra(tat, now time.Time, n int64) (newTAT time.Time, ok bool, retry, reset time.Duration, remaining int64) {
	interval := period / time.Duration(n)
	base := tat
	if base.Before(now) {
		base = now
	}
	newTAT = base.Add(interval)
	allowAt := newTAT.Add(-period)
	if now.Before(allowAt) {
		return tat, false, allowAt.Sub(now), base.Sub(now), 0
	}
	used := newTAT.Sub(now)
	remaining = int64((period - used) / interval)
	return newTAT, true, 0, used, remaining
}

// level returns the bucket level of st at now under capacity c.
func (st *keyState) level(now time.Time, c int64) float64 {
	if st.tokenCap != c || st.tokensAt.IsZero() {
		// First use, or the limit changed: start full (a changed limit keeps
		// what was spent: the deficit carries over).
		spent := float64(st.tokenCap) - st.tokens
		if st.tokensAt.IsZero() || spent < 0 {
			spent = 0
		}
		st.tokens = float64(c) - spent
		st.tokenCap = c
		st.tokensAt = now
	}
	elapsed := now.Sub(st.tokensAt)
	if elapsed > 0 {
		st.tokens = math.Min(float64(c), st.tokens+float64(c)*elapsed.Seconds()/period.Seconds())
		st.tokensAt = now
	}
	return st.tokens
}

func tokenWait(missing float64, c int64) time.Duration {
	if missing <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(missing / float64(c) * float64(period)))
}

// Admit implements Store.
func (s *MemoryStore) Admit(_ context.Context, a Ask) (Decision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st := s.keys[a.Key]
	if st == nil {
		st = &keyState{}
		s.keys[a.Key] = st
	}
	var d Decision
	refuse := func(reason string, retry time.Duration) (Decision, error) {
		d.Allowed, d.Reason, d.RetryAfter = false, reason, retry
		return d, nil
	}

	// Evaluate every limit first; commit only if all pass.
	var gTAT, kTAT time.Time
	var tokenLevel float64
	if a.Limit.TPM > 0 {
		tokenLevel = st.level(now, a.Limit.TPM)
		d.Status.LimitTokens = a.Limit.TPM
		d.Status.RemainingTokens = max(0, int64(tokenLevel))
		d.Status.ResetTokens = tokenWait(float64(a.Limit.TPM)-tokenLevel, a.Limit.TPM)
		// A reservation that can never fit is refused as such first, whatever
		// else is exhausted now: a 429 would make SDKs retry it for nothing.
		if a.Tokens > a.Limit.TPM {
			return refuse(ReasonTooLarge, 0)
		}
	}
	if a.Limit.RPM > 0 {
		var ok bool
		var retry, reset time.Duration
		var remaining int64
		kTAT, ok, retry, reset, remaining = gcra(st.tat, now, a.Limit.RPM)
		d.Status.LimitRequests, d.Status.RemainingRequests, d.Status.ResetRequests = a.Limit.RPM, remaining, reset
		if !ok {
			return refuse(ReasonRPM, retry)
		}
	}
	if a.Global.RPM > 0 {
		var ok bool
		var retry, reset time.Duration
		var remaining int64
		gTAT, ok, retry, reset, remaining = gcra(s.global.tat, now, a.Global.RPM)
		if a.Limit.RPM == 0 {
			d.Status.LimitRequests, d.Status.RemainingRequests, d.Status.ResetRequests = a.Global.RPM, remaining, reset
		}
		if !ok {
			return refuse(ReasonGlobalRPM, retry)
		}
	}
	if a.Limit.TPM > 0 {
		if tokenLevel < float64(a.Tokens) {
			return refuse(ReasonTPM, tokenWait(float64(a.Tokens)-tokenLevel, a.Limit.TPM))
		}
	}
	if a.Limit.Concurrency > 0 && st.inflight >= a.Limit.Concurrency {
		return refuse(ReasonConcurrency, time.Second)
	}
	if a.Global.Concurrency > 0 && s.global.inflight >= a.Global.Concurrency {
		return refuse(ReasonGlobalConcurrency, time.Second)
	}

	// Commit.
	t := Ticket{Key: a.Key}
	if a.Limit.RPM > 0 {
		st.tat = kTAT
		t.RPM = a.Limit.RPM
	}
	if a.Global.RPM > 0 {
		s.global.tat = gTAT
		t.GlobalRPM = a.Global.RPM
	}
	if a.Limit.TPM > 0 {
		st.tokens -= float64(a.Tokens)
		t.Tokens = a.Tokens
		d.Status.RemainingTokens = max(0, int64(st.tokens))
		d.Status.ResetTokens = tokenWait(float64(a.Limit.TPM)-st.tokens, a.Limit.TPM)
	}
	if a.Limit.Concurrency > 0 {
		st.inflight++
		t.Concurrency = true
	}
	if a.Global.Concurrency > 0 {
		s.global.inflight++
		t.GlobalConcurrency = true
	}
	d.Allowed, d.Ticket = true, t
	return d, nil
}

// Peek implements Peeker: the budget a request of key would see now. The
// requests reported are the key's rpm budget, or the global one when the key
// has no rpm limit; a zero limit means that dimension is unlimited.
func (s *MemoryStore) Peek(_ context.Context, key string, l Limit, g GlobalLimit) (RateStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var st keyState // a copy: peeking changes nothing
	if p := s.keys[key]; p != nil {
		st = *p
	}
	var rs RateStatus
	switch {
	case l.RPM > 0:
		rs.LimitRequests = l.RPM
		rs.RemainingRequests, rs.ResetRequests = gcraLeft(st.tat, now, l.RPM)
	case g.RPM > 0:
		rs.LimitRequests = g.RPM
		rs.RemainingRequests, rs.ResetRequests = gcraLeft(s.global.tat, now, g.RPM)
	}
	if l.TPM > 0 {
		level := st.level(now, l.TPM)
		rs.LimitTokens = l.TPM
		rs.RemainingTokens = max(0, int64(level))
		rs.ResetTokens = tokenWait(float64(l.TPM)-level, l.TPM)
	}
	return rs, nil
}

// SlotsInUse implements SlotCounter.
func (s *MemoryStore) SlotsInUse(_ context.Context, key string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.keys[key]; st != nil {
		return st.inflight, nil
	}
	return 0, nil
}

// gcraLeft returns how many requests a GCRA limit of n per minute would
// admit at once now, and how long until its budget is full again.
func gcraLeft(tat, now time.Time, n int64) (int64, time.Duration) {
	used := max(tat.Sub(now), 0)
	interval := period / time.Duration(n)
	return min(n, max(0, int64((period-used)/interval))), used
}

// Finish implements Store.
func (s *MemoryStore) Finish(_ context.Context, t Ticket, used int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if used < 0 {
		used = t.Tokens
	}
	s.release(t)
	if st := s.keys[t.Key]; st != nil && t.Tokens > 0 {
		st.tokens += float64(t.Tokens - used)
		st.tokens = math.Min(st.tokens, float64(st.tokenCap))
	}
	return nil
}

// Cancel implements Store.
func (s *MemoryStore) Cancel(_ context.Context, t Ticket) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.release(t)
	if st := s.keys[t.Key]; st != nil {
		if t.RPM > 0 {
			st.tat = st.tat.Add(-period / time.Duration(t.RPM))
		}
		st.tokens = math.Min(st.tokens+float64(t.Tokens), float64(st.tokenCap))
	}
	if t.GlobalRPM > 0 {
		s.global.tat = s.global.tat.Add(-period / time.Duration(t.GlobalRPM))
	}
	return nil
}

func (s *MemoryStore) release(t Ticket) {
	if t.GlobalConcurrency && s.global.inflight > 0 {
		s.global.inflight--
	}
	// A key forgotten by Retain and seen again starts at 0: never go below.
	if st := s.keys[t.Key]; st != nil && t.Concurrency && st.inflight > 0 {
		st.inflight--
	}
}

// Retain implements Store.
func (s *MemoryStore) Retain(_ context.Context, keep func(string) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.keys {
		if !keep(k) {
			delete(s.keys, k)
		}
	}
	return nil
}
