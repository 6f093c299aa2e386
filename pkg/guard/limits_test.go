package guard

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

func withLimits(content string) harnessOpt {
	return func(cfg *config.Guard, h *harness) {
		if err := os.WriteFile(cfg.LimitsFile, []byte(content), 0o600); err != nil {
			panic(err)
		}
	}
}

// burst fires n requests at once (released together) and counts statuses.
func (h *harness) burst(t *testing.T, n int, key func(i int) string, method, path string, body func(i int) any) map[int]int {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	counts := map[int]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var rd *strings.Reader
			if body != nil {
				b, _ := json.Marshal(body(i))
				rd = strings.NewReader(string(b))
			} else {
				rd = strings.NewReader("")
			}
			req, _ := http.NewRequest(method, h.url+path, rd)
			req.Header.Set("Authorization", "Bearer "+key(i))
			<-start
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			counts[resp.StatusCode]++
			mu.Unlock()
		}(i)
	}
	close(start)
	wg.Wait()
	return counts
}

func TestNoOverAdmissionRPM(t *testing.T) {
	// The store's clock is frozen: on a loaded 2-core machine running the
	// whole suite under -race, 200 requests may take longer than the 3 s
	// refill interval of rpm 20 on the wall clock, which would let a 21st
	// request in legitimately and make the test flaky.
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"rpm": 20}}}`), withStore(frozenStore()))
	start := time.Now()
	got := h.burst(t, 200, func(int) string { return keyLimit }, "GET", "/v1/models", nil)
	t.Logf("burst of 200 took %v", time.Since(start))
	if got[200] != 20 || got[429] != 180 {
		t.Fatalf("statuses = %v, want 20×200 and 180×429", got)
	}
}

func TestNoOverAdmissionGlobal(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {}}`), withStore(frozenStore()), func(cfg *config.Guard, _ *harness) {
		cfg.Global = &config.GlobalLimits{RPM: 15}
	})
	keysUsed := []string{keyUser1, keyAdmin}
	got := h.burst(t, 150, func(i int) string { return keysUsed[i%2] }, "GET", "/v1/models", nil)
	if got[200] != 15 || got[429] != 135 {
		t.Fatalf("statuses = %v, want 15×200 and 135×429", got)
	}
}

// TestNoOverAdmissionTPM holds every admitted request at the upstream so no
// reservation is settled while the others are decided.
func TestNoOverAdmissionTPM(t *testing.T) {
	body := chatBody("hold", 200, false)
	raw, _ := json.Marshal(body)
	req, err := inspect(raw, lookupRoute("/v1/chat/completions"), inspectLimits{defaultMaxTokens: 100, maxModelLen: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r := req.reserve
	tpm := 10*r + r/2
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"tpm": `+itoa(tpm)+`}}}`), withStore(frozenStore())) // see TestNoOverAdmissionRPM
	var got map[int]int
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = h.burst(t, 100, func(int) string { return keyLimit }, "POST", "/v1/chat/completions", func(int) any { return body })
	}()
	waitFor(t, 10*time.Second, "10 requests held upstream", func() bool { return h.up.inFlight.Load() == 10 })
	waitFor(t, 10*time.Second, "90 rejections", func() bool {
		return counterValue(t, h, "glmctl_guard_rate_limit_rejections_total", "tpm") == 90
	})
	h.up.releaseAll()
	<-done
	if got[200] != 10 || got[429] != 90 {
		t.Fatalf("statuses = %v, want 10×200 and 90×429 (reservation %d, tpm %d)", got, r, tpm)
	}
}

func TestConcurrencyLimitsAndRelease(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"concurrency": 3}}}`), func(cfg *config.Guard, _ *harness) {
		cfg.Global = &config.GlobalLimits{Concurrency: 5}
	})
	body := func(int) any { return chatBody("hold", 10, false) }
	var got map[int]int
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = h.burst(t, 30, func(int) string { return keyLimit }, "POST", "/v1/chat/completions", body)
	}()
	waitFor(t, 10*time.Second, "3 requests held upstream", func() bool { return h.up.inFlight.Load() == 3 })
	waitFor(t, 10*time.Second, "27 rejections", func() bool {
		return counterValue(t, h, "glmctl_guard_rate_limit_rejections_total", "concurrency") == 27
	})
	h.up.releaseAll()
	<-done
	if got[200] != 3 || got[429] != 27 {
		t.Fatalf("key concurrency: %v, want 3×200 and 27×429", got)
	}
	// Slots were released: a second round gets through again.
	if resp, b := h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("glm", 10, false)); resp.StatusCode != 200 {
		t.Fatalf("after release: %d %s", resp.StatusCode, b)
	}
	// Global concurrency 5 across keys.
	h.up.rearm()
	keysUsed := []string{keyUser1, keyAdmin}
	done = make(chan struct{})
	go func() {
		defer close(done)
		got = h.burst(t, 20, func(i int) string { return keysUsed[i%2] }, "POST", "/v1/chat/completions", body)
	}()
	waitFor(t, 10*time.Second, "5 requests held upstream", func() bool { return h.up.inFlight.Load() == 5 })
	waitFor(t, 10*time.Second, "15 rejections", func() bool {
		return counterValue(t, h, "glmctl_guard_rate_limit_rejections_total", "global_concurrency") == 15
	})
	h.up.releaseAll()
	<-done
	if got[200] != 5 || got[429] != 15 {
		t.Fatalf("global concurrency: %v, want 5×200 and 15×429", got)
	}
}

func TestRequestTooLargeAndHeaders(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"rpm": 10, "tpm": 500}}}`))
	resp, b := h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("m", 1000, false))
	if e := errorBody(t, b); resp.StatusCode != 413 || e.Code != "request_too_large" {
		t.Fatalf("got %d %+v", resp.StatusCode, e)
	}
	if resp.Header.Get("Retry-After") != "" {
		t.Fatal("a request that can never fit must not invite a retry")
	}
	// It cost nothing: the full request budget is still there.
	resp, b = h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("m", 100, false))
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	hd := resp.Header
	if hd.Get("X-Ratelimit-Limit-Requests") != "10" || hd.Get("X-Ratelimit-Remaining-Requests") != "9" || hd.Get("X-Ratelimit-Reset-Requests") != "6s" {
		t.Fatalf("request headers: %v", hd)
	}
	if hd.Get("X-Ratelimit-Limit-Tokens") != "500" || hd.Get("X-Ratelimit-Remaining-Tokens") == "" {
		t.Fatalf("token headers: %v", hd)
	}
	if _, err := time.ParseDuration(hd.Get("X-Ratelimit-Reset-Tokens")); err != nil {
		t.Fatalf("reset-tokens %q: %v", hd.Get("X-Ratelimit-Reset-Tokens"), err)
	}
}

// TestAbandonedStreamChargedReservation: a client that walks away from a
// stream is charged what it reserved; its concurrency slot comes back; the
// upstream request is cancelled at once.
func TestAbandonedStreamChargedReservation(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"tpm": 10000, "concurrency": 1}}}`))
	raw, _ := json.Marshal(chatBody("slow", 300, true))
	req, _ := http.NewRequest("POST", h.url+"/v1/chat/completions", strings.NewReader(string(raw)))
	req.Header.Set("Authorization", "Bearer "+keyLimit)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	left := time.Now()
	cancel()
	resp.Body.Close()
	var cancelled time.Time
	waitFor(t, 15*time.Second, "upstream cancelled", func() bool {
		h.up.mu.Lock()
		defer h.up.mu.Unlock()
		cancelled = h.up.cancelledAt
		return !cancelled.IsZero()
	})
	t.Logf("upstream saw the cancellation %v after the client left", cancelled.Sub(left))
	recs := h.audit.completed(t, id)
	if c := recs[len(recs)-1]; c.Error == "" {
		t.Fatalf("abandoned stream recorded without an error: %+v", c)
	}
	// Charged its reservation: remaining tokens = 10000 - reservation (no refund).
	r2, _ := h.do(t, "GET", "/v1/models", keyLimit, nil)
	if r2.StatusCode != 200 {
		t.Fatalf("concurrency slot not released: %d", r2.StatusCode)
	}
	rem := atoi(r2.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if rem > 10000-300 || rem < 10000-400 {
		t.Fatalf("remaining tokens %d: the reservation (300 + prompt) was not charged", rem)
	}
}

// TestSettleToRealUsage: a completed request is charged its real usage, not
// its reservation.
func TestSettleToRealUsage(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"tpm": 10000}}}`))
	for _, stream := range []bool{false, true} {
		resp, _ := h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("m", 3000, stream))
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		h.audit.completed(t, resp.Header.Get("X-Request-Id"))
	}
	r2, _ := h.do(t, "GET", "/v1/models", keyLimit, nil)
	rem := atoi(r2.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if used := 10000 - rem; used > 2*(promptTokens+completionTokens)+1 {
		t.Fatalf("used %d tokens, want about %d (real usage of two requests)", used, 2*(promptTokens+completionTokens))
	}
}

// counterValue sums the series of the family name that have a label whose
// value is label.
func counterValue(t testing.TB, h *harness, name, label string) int {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					if m.GetCounter() != nil {
						sum += m.GetCounter().GetValue()
					} else {
						sum += m.GetGauge().GetValue()
					}
					break
				}
			}
		}
	}
	return int(sum)
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func atoi(s string) int64 {
	var n int64
	_ = json.Unmarshal([]byte(s), &n)
	return n
}

// TestUpstreamConnectionsReused: a second burst of 60 concurrent requests
// finds the first burst's upstream connections idle and reuses them. Both
// bursts are held at the upstream until all 60 are in flight, so both need
// exactly 60 connections at once whatever the machine's load (unheld bursts
// overlap more or less by luck, and a busier second burst needs new
// connections legitimately).
func TestUpstreamConnectionsReused(t *testing.T) {
	const n = 60
	h := newHarness(t, withLimits(`{"rate_limits": {}}`))
	round := func() {
		t.Helper()
		var got map[int]int
		done := make(chan struct{})
		go func() {
			defer close(done)
			got = h.burst(t, n, func(int) string { return keyUser2 }, "POST", "/v1/chat/completions",
				func(int) any { return chatBody("hold", 10, false) })
		}()
		waitFor(t, 15*time.Second, "all requests held upstream", func() bool { return h.up.inFlight.Load() == n })
		h.up.releaseAll()
		<-done
		if got[200] != n {
			t.Fatal(got)
		}
	}
	round()
	first := h.up.conns.Load()
	h.up.rearm()
	round()
	added := h.up.conns.Load() - first
	t.Logf("upstream connections: %d for the first burst, %d more for the second", first, added)
	if first < n || added > n/10 {
		t.Fatalf("%d connections for %d held requests, then %d new ones for the second burst: idle ones were not kept", first, n, added)
	}
}
