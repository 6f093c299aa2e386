package guard

import (
	"context"
	"sync"
	"testing"
	"time"
)

// The limit algorithms' tests, written once against the Store interface and
// run against every store: the in-process MemoryStore and the RedisStore
// (one server, and a one-node Redis Cluster).

// suiteClock is a fake clock that may be read from many goroutines.
type suiteClock struct {
	mu sync.Mutex
	t  time.Time
}

func newSuiteClock() *suiteClock { return &suiteClock{t: time.Unix(1_800_000_000, 0)} }

func (c *suiteClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *suiteClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// storeMaker returns n views of one fresh limits state, all on clock c: for
// the in-process store one store n times; for Redis n stores on one server,
// as n guards on n boxes would be.
type storeMaker func(t *testing.T, c *suiteClock, n int) []Store

func TestMemoryStoreSuite(t *testing.T) {
	runStoreSuite(t, func(t *testing.T, c *suiteClock, n int) []Store {
		s := NewMemoryStore(c.now)
		out := make([]Store, n)
		for i := range out {
			out[i] = s
		}
		return out
	})
}

func TestRedisStoreSuite(t *testing.T) {
	for _, mode := range []string{"server", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var srv *redisServer
			if mode == "cluster" {
				srv = startRedisCluster(t)
			} else {
				srv = startRedis(t)
			}
			runStoreSuite(t, func(t *testing.T, c *suiteClock, n int) []Store {
				out := make([]Store, n)
				for i := range out {
					out[i] = newTestRedisStore(t, srv, RedisOptions{now: c.now})
				}
				return out
			})
		})
	}
}

func runStoreSuite(t *testing.T, mk storeMaker) {
	one := func(t *testing.T) (*suiteClock, Store) {
		c := newSuiteClock()
		return c, mk(t, c, 1)[0]
	}
	t.Run("GCRABurstThenSmoothRefill", func(t *testing.T) {
		c, s := one(t)
		a := Ask{Key: "k", Limit: Limit{RPM: 60}}
		for i := 0; i < 60; i++ {
			if d := suiteAdmit(t, s, a); !d.Allowed {
				t.Fatalf("request %d of a fresh minute refused", i)
			}
		}
		d := suiteAdmit(t, s, a)
		if d.Allowed || d.Reason != ReasonRPM || d.RetryAfter != time.Second {
			t.Fatalf("61st: %+v", d)
		}
		// Refused requests cost nothing: hammering does not push the next slot away.
		for i := 0; i < 100; i++ {
			suiteAdmit(t, s, a)
		}
		c.add(time.Second)
		if d := suiteAdmit(t, s, a); !d.Allowed {
			t.Fatal("one interval later one request must pass")
		}
		if d := suiteAdmit(t, s, a); d.Allowed {
			t.Fatal("only one per interval after the burst (no window edge)")
		}
		c.add(time.Minute)
		d = suiteAdmit(t, s, a)
		if !d.Allowed || d.Status.RemainingRequests != 59 || d.Status.ResetRequests != time.Second {
			t.Fatalf("after a minute idle: %+v", d.Status)
		}
	})

	t.Run("TokenBucketDebitCredit", func(t *testing.T) {
		c, s := one(t)
		ctx := context.Background()
		a := Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 600}
		d1 := suiteAdmit(t, s, a)
		if !d1.Allowed || d1.Status.RemainingTokens != 400 {
			t.Fatalf("first: %+v", d1)
		}
		if d := suiteAdmit(t, s, a); d.Allowed || d.Reason != ReasonTPM {
			t.Fatalf("second should wait: %+v", d)
		}
		// Settle to 100 real tokens: 500 come back.
		if err := s.Finish(ctx, d1.Ticket, 100); err != nil {
			t.Fatal(err)
		}
		d2 := suiteAdmit(t, s, a)
		if !d2.Allowed || d2.Status.RemainingTokens != 300 {
			t.Fatalf("after refund: %+v", d2.Status)
		}
		// An overrun (used more than reserved) is charged too.
		if err := s.Finish(ctx, d2.Ticket, 1000); err != nil {
			t.Fatal(err)
		}
		if d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 1}); d.Allowed {
			t.Fatalf("bucket should be in debt: %+v", d.Status)
		}
		// 100 tokens of debt: full again after 66 s at 1000 per minute.
		c.add(time.Minute)
		if d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 1000}); d.Allowed || d.RetryAfter != 6*time.Second {
			t.Fatalf("debt not carried: %+v", d)
		}
		c.add(6 * time.Second)
		if d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 1000}); !d.Allowed {
			t.Fatalf("full after the debt is repaid: %+v", d)
		}
		if d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 1001}); d.Reason != ReasonTooLarge {
			t.Fatalf("too large: %+v", d)
		}
		// Unknown usage (-1) charges the whole reservation: nothing comes back.
		c.add(time.Minute)
		d3 := suiteAdmit(t, s, a)
		if err := s.Finish(ctx, d3.Ticket, -1); err != nil {
			t.Fatal(err)
		}
		if d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{TPM: 1000}, Tokens: 401}); d.Allowed {
			t.Fatalf("an unknown usage was refunded: %+v", d)
		}
	})

	t.Run("AllOrNothing", func(t *testing.T) {
		_, s := one(t)
		ctx := context.Background()
		// Key rpm has room, tpm does not: nothing is taken.
		a := Ask{Key: "k", Limit: Limit{RPM: 2, TPM: 100, Concurrency: 5}, Global: GlobalLimit{RPM: 100, Concurrency: 5}, Tokens: 80}
		d := suiteAdmit(t, s, a)
		if !d.Allowed {
			t.Fatal(d)
		}
		if d := suiteAdmit(t, s, a); d.Allowed || d.Reason != ReasonTPM {
			t.Fatalf("%+v", d)
		}
		if err := s.Finish(ctx, d.Ticket, 0); err != nil {
			t.Fatal(err)
		}
		if d := suiteAdmit(t, s, a); !d.Allowed {
			t.Fatalf("the refused request took an rpm slot: %+v", d)
		}
		// One request in flight, for the key and globally: one more fits
		// under concurrency 2, the next does not.
		two := Ask{Key: "k", Limit: Limit{Concurrency: 2}, Global: GlobalLimit{Concurrency: 5}}
		if d := suiteAdmit(t, s, two); !d.Allowed {
			t.Fatalf("key concurrency: a refused or finished request still holds a slot: %+v", d)
		}
		if d := suiteAdmit(t, s, two); d.Allowed || d.Reason != ReasonConcurrency {
			t.Fatalf("key concurrency 2 with 2 in flight: %+v", d)
		}
		g := Ask{Key: "other", Global: GlobalLimit{Concurrency: 2}}
		if d := suiteAdmit(t, s, g); d.Allowed || d.Reason != ReasonGlobalConcurrency {
			t.Fatalf("global concurrency 2 with 2 in flight: %+v", d)
		}
	})

	t.Run("CancelRefundsEverything", func(t *testing.T) {
		_, s := one(t)
		a := Ask{Key: "k", Limit: Limit{RPM: 1, TPM: 10, Concurrency: 1}, Global: GlobalLimit{RPM: 1, Concurrency: 1}, Tokens: 10}
		d := suiteAdmit(t, s, a)
		if err := s.Cancel(context.Background(), d.Ticket); err != nil {
			t.Fatal(err)
		}
		if d := suiteAdmit(t, s, a); !d.Allowed {
			t.Fatalf("cancelled admission still counted: %+v", d)
		}
	})

	// A reservation that can never fit the key's tpm is refused as
	// request_too_large (413, not retryable) even while the key's or the
	// service's rpm is exhausted.
	t.Run("TooLargeWinsOverExhaustedLimits", func(t *testing.T) {
		_, s := one(t)
		lim := Limit{RPM: 1, TPM: 1000}
		glob := GlobalLimit{RPM: 1}
		if d := suiteAdmit(t, s, Ask{Key: "k", Limit: lim, Global: glob, Tokens: 10}); !d.Allowed {
			t.Fatalf("first request: %+v", d)
		}
		if d := suiteAdmit(t, s, Ask{Key: "k", Limit: lim, Global: glob, Tokens: 10}); d.Allowed || d.Reason != ReasonRPM {
			t.Fatalf("rpm exhausted: got %+v, want %s", d, ReasonRPM)
		}
		d := suiteAdmit(t, s, Ask{Key: "k", Limit: lim, Global: glob, Tokens: 1001})
		if d.Allowed || d.Reason != ReasonTooLarge || d.RetryAfter != 0 {
			t.Fatalf("never-fitting request while rpm is exhausted: got %+v, want %s", d, ReasonTooLarge)
		}
		d = suiteAdmit(t, s, Ask{Key: "other", Limit: Limit{TPM: 1000}, Global: glob, Tokens: 1001})
		if d.Allowed || d.Reason != ReasonTooLarge {
			t.Fatalf("never-fitting request while the global rpm is exhausted: got %+v, want %s", d, ReasonTooLarge)
		}
	})

	t.Run("GlobalRPMAcrossKeys", func(t *testing.T) {
		c, s := one(t)
		g := GlobalLimit{RPM: 3}
		for i, k := range []string{"a", "b", "c"} {
			if d := suiteAdmit(t, s, Ask{Key: k, Global: g}); !d.Allowed {
				t.Fatalf("request %d: %+v", i, d)
			}
		}
		d := suiteAdmit(t, s, Ask{Key: "d", Global: g})
		if d.Allowed || d.Reason != ReasonGlobalRPM || d.RetryAfter != 20*time.Second {
			t.Fatalf("4th: %+v", d)
		}
		// The key's own rpm passes but the global one refuses: the key's
		// slot is not taken.
		d = suiteAdmit(t, s, Ask{Key: "e", Limit: Limit{RPM: 1}, Global: g})
		if d.Allowed || d.Reason != ReasonGlobalRPM || d.Status.LimitRequests != 1 {
			t.Fatalf("key rpm 1 under an exhausted global: %+v", d)
		}
		c.add(20 * time.Second)
		if d := suiteAdmit(t, s, Ask{Key: "e", Limit: Limit{RPM: 1}, Global: g}); !d.Allowed {
			t.Fatalf("the refused request took the key's rpm: %+v", d)
		}
	})

	t.Run("Peek", func(t *testing.T) {
		_, s := one(t)
		p, ok := s.(Peeker)
		if !ok {
			t.Skip("not a Peeker")
		}
		ctx := context.Background()
		lim := Limit{RPM: 10, TPM: 1000}
		g := GlobalLimit{RPM: 100}
		d := suiteAdmit(t, s, Ask{Key: "k", Limit: lim, Global: g, Tokens: 100})
		for range 2 { // peeking changes nothing
			st, err := p.Peek(ctx, "k", lim, g)
			if err != nil {
				t.Fatal(err)
			}
			if st != d.Status {
				t.Fatalf("peek %+v, admit said %+v", st, d.Status)
			}
		}
		// A key without its own rpm reports the global budget.
		st, err := p.Peek(ctx, "fresh", Limit{TPM: 50}, g)
		if err != nil {
			t.Fatal(err)
		}
		want := RateStatus{LimitRequests: 100, RemainingRequests: 99, ResetRequests: 600 * time.Millisecond, LimitTokens: 50, RemainingTokens: 50}
		if st != want {
			t.Fatalf("peek of a fresh key: %+v, want %+v", st, want)
		}
	})

	t.Run("SlotsInUse", func(t *testing.T) {
		_, s := one(t)
		sc, ok := s.(SlotCounter)
		if !ok {
			t.Fatalf("%T does not count slots", s)
		}
		ctx := context.Background()
		lim := Limit{Concurrency: 3}
		a := suiteAdmit(t, s, Ask{Key: "c", Limit: lim})
		b := suiteAdmit(t, s, Ask{Key: "c", Limit: lim})
		if !a.Allowed || !b.Allowed {
			t.Fatalf("%+v %+v", a, b)
		}
		if n, err := sc.SlotsInUse(ctx, "c"); err != nil || n != 2 {
			t.Fatalf("two admitted: %d slots (%v), want 2", n, err)
		}
		if err := s.Finish(ctx, a.Ticket, 0); err != nil {
			t.Fatal(err)
		}
		if n, err := sc.SlotsInUse(ctx, "c"); err != nil || n != 1 {
			t.Fatalf("one finished: %d slots (%v), want 1", n, err)
		}
		if n, err := sc.SlotsInUse(ctx, "nobody"); err != nil || n != 0 {
			t.Fatalf("an unknown key: %d slots (%v), want 0", n, err)
		}
	})

	t.Run("UnlimitedKey", func(t *testing.T) {
		_, s := one(t)
		for i := 0; i < 10; i++ {
			d := suiteAdmit(t, s, Ask{Key: "free", Tokens: 1 << 40})
			if !d.Allowed || d.Status != (RateStatus{}) {
				t.Fatalf("%+v", d)
			}
			if err := s.Finish(context.Background(), d.Ticket, 5); err != nil {
				t.Fatal(err)
			}
		}
	})

	// Two guards on one state admit exactly the limit between them under a
	// concurrent burst (the clock does not move: every request arrives
	// within one refill interval).
	t.Run("BurstAcrossGuards", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			ask    func(i int) Ask
			n      int
			want   int
			reason string
		}{
			{"rpm", func(int) Ask { return Ask{Key: "k", Limit: Limit{RPM: 20}} }, 200, 20, ReasonRPM},
			{"tpm", func(int) Ask { return Ask{Key: "k", Limit: Limit{TPM: 1050}, Tokens: 100} }, 100, 10, ReasonTPM},
			{"concurrency", func(int) Ask { return Ask{Key: "k", Limit: Limit{Concurrency: 7}} }, 100, 7, ReasonConcurrency},
			{"global_rpm", func(i int) Ask { return Ask{Key: string(rune('a' + i%4)), Global: GlobalLimit{RPM: 15}} }, 150, 15, ReasonGlobalRPM},
			{"global_concurrency", func(i int) Ask {
				return Ask{Key: string(rune('a' + i%4)), Limit: Limit{RPM: 1000}, Global: GlobalLimit{Concurrency: 5}}
			}, 100, 5, ReasonGlobalConcurrency},
		} {
			t.Run(tc.name, func(t *testing.T) {
				stores := mk(t, newSuiteClock(), 2)
				got, tickets := burst(t, stores, tc.n, tc.ask)
				if got[""] != tc.want || got[tc.reason] != tc.n-tc.want || len(got) != 2 {
					t.Fatalf("decisions %v, want %d admitted and %d refused for %s", got, tc.want, tc.n-tc.want, tc.reason)
				}
				if tc.reason != ReasonConcurrency && tc.reason != ReasonGlobalConcurrency {
					return
				}
				// Finishing frees the slots: a second burst gets exactly as many.
				for i, tk := range tickets {
					if err := stores[i%2].Finish(context.Background(), tk, 0); err != nil {
						t.Fatal(err)
					}
				}
				if got, _ := burst(t, stores, tc.n, tc.ask); got[""] != tc.want {
					t.Fatalf("second burst: %v, want %d admitted", got, tc.want)
				}
			})
		}
	})
}

// burst asks n times at once, alternating between the stores, and counts
// the decisions by reason ("" admitted); it returns the admitted tickets in
// the order of the store that admitted them (even: stores[0]).
func burst(t *testing.T, stores []Store, n int, ask func(i int) Ask) (map[string]int, []Ticket) {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	byStore := make([][]Ticket, len(stores))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := stores[i%len(stores)]
			<-start
			d, err := s.Admit(context.Background(), ask(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			got[d.Reason]++
			if d.Allowed {
				byStore[i%len(stores)] = append(byStore[i%len(stores)], d.Ticket)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	// Interleave so that ticket i belongs to stores[i%len(stores)].
	var tickets []Ticket
	for j := 0; ; j++ {
		added := false
		for k := range byStore {
			if j < len(byStore[k]) {
				added = true
			}
		}
		if !added {
			break
		}
		for k := range byStore {
			if j < len(byStore[k]) {
				tickets = append(tickets, byStore[k][j])
			} else {
				tickets = append(tickets, Ticket{}) // padding, finishing it is a no-op
			}
		}
	}
	return got, tickets
}

func suiteAdmit(t testing.TB, s Store, a Ask) Decision {
	t.Helper()
	d, err := s.Admit(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
