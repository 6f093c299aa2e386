package guard

import (
	"context"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

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
		"{\"rate_limits\": {\n\"u\": {\"rpm\": \"ten\"}}}": "2:14", // at the value
		"{\"rate_limits\": {\"u\": 3}}":                    "must be an object",
		"{\"limits\": {}}":                                 `missing "rate_limits"`,
		"{\"rate_limits\": {\n \"u\": {\"rpm\": 1,}}}":     "2:17",
	} {
		if _, _, err := ParseLimits([]byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", src, err, want)
		}
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
