package guard

import (
	"context"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

func newFake() (*fakeClock, *MemoryStore) {
	c := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	return c, NewMemoryStore(c.now)
}

func admit(t *testing.T, s *MemoryStore, a Ask) Decision {
	t.Helper()
	d, err := s.Admit(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestGCRABurstThenSmoothRefill(t *testing.T) {
	c, s := newFake()
	a := Ask{Key: "k", Limit: Limit{RPM: 60}}
	for i := 0; i < 60; i++ {
		if d := admit(t, s, a); !d.Allowed {
			t.Fatalf("request %d of a fresh minute refused", i)
		}
	}
	d := admit(t, s, a)
	if d.Allowed || d.Reason != ReasonRPM || d.RetryAfter != time.Second {
		t.Fatalf("61st: %+v", d)
	}
	// Refused requests cost nothing: hammering does not push the next slot away.
	for i := 0; i < 100; i++ {
		admit(t, s, a)
	}
	c.add(time.Second)
	if d := admit(t, s, a); !d.Allowed {
		t.Fatal("one interval later one request must pass")
	}
	if d := admit(t, s, a); d.Allowed {
		t.Fatal("only one per interval after the burst (no window edge)")
	}
	c.add(time.Minute)
	d = admit(t, s, a)
	if !d.Allowed || d.Status.RemainingRequests != 59 || d.Status.ResetRequests != time.Second {
		t.Fatalf("after a minute idle: %+v", d.Status)
	}
}

func TestTokenBucketDebitCredit(t *testing.T) {
	c, s := newFake()
	ctx := context.Background()
	a := Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 600}
	d1 := admit(t, s, a)
	if !d1.Allowed || d1.Status.RemainingTokens != 400 {
		t.Fatalf("first: %+v", d1)
	}
	if d := admit(t, s, a); d.Allowed || d.Reason != ReasonTPM {
		t.Fatalf("second should wait: %+v", d)
	}
	// Settle to 100 real tokens: 500 come back.
	if err := s.Finish(ctx, d1.Ticket, 100); err != nil {
		t.Fatal(err)
	}
	d2 := admit(t, s, a)
	if !d2.Allowed || d2.Status.RemainingTokens != 300 {
		t.Fatalf("after refund: %+v", d2.Status)
	}
	// An overrun (used more than reserved) is charged too.
	_ = s.Finish(ctx, d2.Ticket, 1000)
	if d := admit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 1}); d.Allowed {
		t.Fatalf("bucket should be in debt: %+v", d.Status)
	}
	// 100 tokens of debt: full again after 66 s at 1000 per minute.
	c.add(time.Minute)
	if d := admit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 1000}); d.Allowed || d.RetryAfter != 6*time.Second {
		t.Fatalf("debt not carried: %+v", d)
	}
	c.add(6 * time.Second)
	if d := admit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 1000}); !d.Allowed {
		t.Fatalf("full after the debt is repaid: %+v", d)
	}
	if d := admit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 1001}); d.Reason != ReasonTooLarge {
		t.Fatalf("too large: %+v", d)
	}
}

func TestAllOrNothing(t *testing.T) {
	_, s := newFake()
	ctx := context.Background()
	// Key rpm has room, tpm does not: nothing is taken.
	a := Ask{Key: "k", Limit: Limit{RPM: 2, TPM: 100, Concurrency: 5}, Global: GlobalLimit{RPM: 100, Concurrency: 5}, Tokens: 80}
	d := admit(t, s, a)
	if !d.Allowed {
		t.Fatal(d)
	}
	if d := admit(t, s, a); d.Allowed || d.Reason != ReasonTPM {
		t.Fatalf("%+v", d)
	}
	_ = s.Finish(ctx, d.Ticket, 0)
	if d := admit(t, s, a); !d.Allowed {
		t.Fatalf("the refused request took an rpm slot: %+v", d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.global.inflight != 1 || s.keys["k"].inflight != 1 {
		t.Fatalf("inflight global %d key %d, want 1 and 1", s.global.inflight, s.keys["k"].inflight)
	}
}

func TestCancelRefundsEverything(t *testing.T) {
	_, s := newFake()
	a := Ask{Key: "k", Limit: Limit{RPM: 1, TPM: 10, Concurrency: 1}, Global: GlobalLimit{RPM: 1, Concurrency: 1}, Tokens: 10}
	d := admit(t, s, a)
	if err := s.Cancel(context.Background(), d.Ticket); err != nil {
		t.Fatal(err)
	}
	if d := admit(t, s, a); !d.Allowed {
		t.Fatalf("cancelled admission still counted: %+v", d)
	}
}

func TestRetainKeepsLiveKeys(t *testing.T) {
	_, s := newFake()
	a := Ask{Key: "stay", Limit: Limit{RPM: 1}}
	admit(t, s, a)
	admit(t, s, Ask{Key: "gone", Limit: Limit{RPM: 1}})
	_ = s.Retain(context.Background(), func(k string) bool { return k == "stay" })
	if d := admit(t, s, a); d.Allowed {
		t.Fatal("state of a retained key was reset")
	}
	if d := admit(t, s, Ask{Key: "gone", Limit: Limit{RPM: 1}}); !d.Allowed {
		t.Fatal("state of a removed key was kept")
	}
}

func TestParseLimits(t *testing.T) {
	l, warns, err := ParseLimits([]byte(`{"rate_limits": {"default": {"rpm": 60}, "u": {"tpm": 5, "burst": 3}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 {
		t.Fatalf("warnings %v", warns)
	}
	if got := l.For("u"); got != (Limit{TPM: 5}) {
		t.Fatalf("u = %+v (a missing dimension is unlimited)", got)
	}
	if got := l.For("other"); got != (Limit{RPM: 60}) {
		t.Fatalf("other = %+v", got)
	}
	for src, want := range map[string]string{
		"{\"rate_limits\": {\n\"u\": {\"rpm\": -1}}}":      "2:6",
		"{\"rate_limits\": {\n\"u\": {\"rpm\": \"ten\"}}}": "2:6",
		"{\"rate_limits\": {\"u\": 3}}":                    "must be an object",
		"{\"limits\": {}}":                                 `missing "rate_limits"`,
		"{\"rate_limits\": {\n \"u\": {\"rpm\": 1,}}}":     "2:17",
	} {
		if _, _, err := ParseLimits([]byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", src, err, want)
		}
	}
}

// TestTooLargeWinsOverExhaustedLimits: a reservation that can never fit the
// key's tpm is refused as request_too_large (413, not retryable) even while
// the key's or the service's rpm is exhausted, which would otherwise give a
// 429 that SDKs retry until the budget refills, only to get the 413 then.
func TestTooLargeWinsOverExhaustedLimits(t *testing.T) {
	_, s := newFake()
	lim := Limit{RPM: 1, TPM: 1000}
	glob := GlobalLimit{RPM: 1}
	if d := admit(t, s, Ask{Key: "k", Limit: lim, Global: glob, Tokens: 10}); !d.Allowed {
		t.Fatalf("first request: %+v", d)
	}
	if d := admit(t, s, Ask{Key: "k", Limit: lim, Global: glob, Tokens: 10}); d.Allowed || d.Reason != ReasonRPM {
		t.Fatalf("rpm exhausted: got %+v, want %s", d, ReasonRPM)
	}
	d := admit(t, s, Ask{Key: "k", Limit: lim, Global: glob, Tokens: 1001})
	if d.Allowed || d.Reason != ReasonTooLarge || d.RetryAfter != 0 {
		t.Fatalf("never-fitting request while rpm is exhausted: got %+v, want %s", d, ReasonTooLarge)
	}
	d = admit(t, s, Ask{Key: "other", Limit: Limit{TPM: 1000}, Global: glob, Tokens: 1001})
	if d.Allowed || d.Reason != ReasonTooLarge {
		t.Fatalf("never-fitting request while the global rpm is exhausted: got %+v, want %s", d, ReasonTooLarge)
	}
}

// TestReservationCountsChoices: n (or best_of) choices each generate up to
// max_tokens, so the reservation is max_tokens × n; reserving one choice's
// worth would let concurrent n=100 requests run far past the key's tpm
// before any of them settles.
func TestReservationCountsChoices(t *testing.T) {
	rt := lookupRoute("/v1/chat/completions")
	lim := inspectLimits{defaultMaxTokens: 100, maxModelLen: 1 << 20}
	reserve := func(body string) int64 {
		t.Helper()
		req, err := inspect([]byte(body), rt, lim)
		if err != nil {
			t.Fatalf("%s: %s", body, err)
		}
		return req.reserve
	}
	one := reserve(`{"model":"m","prompt":"abcd","max_tokens":50}`)
	if got := reserve(`{"model":"m","prompt":"abcd","max_tokens":50,"n":4}`); got != one+150 {
		t.Errorf("n=4: reserve %d, want %d", got, one+150)
	}
	if got := reserve(`{"model":"m","prompt":"abcd","max_tokens":50,"n":1,"best_of":3}`); got != one+100 {
		t.Errorf("best_of=3: reserve %d, want %d", got, one+100)
	}
	if got := reserve(`{"model":"m","prompt":"abcd","n":2}`); got != one-50+200 {
		t.Errorf("n=2 with the default max_tokens: reserve %d, want %d", got, one-50+200)
	}
	if _, err := inspect([]byte(`{"model":"m","max_tokens":9223372036854775807,"n":2}`), rt, lim); err == nil {
		t.Error("an overflowing n × max_tokens was accepted")
	}
	if _, err := inspect([]byte(`{"model":"m","max_tokens":5,"N":200}`), rt, lim); err == nil {
		t.Error(`"N" beside the guard's "n" must be refused as ambiguous`)
	}
}
