package launcher

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when a test advances it. Tests wait
// (on a wall-clock deadline) for the timer they mean to fire, then move the
// clock to its deadline: a backoff, start_secs or a probe interval takes no
// wall time, and nothing fires early or late.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	active map[*fakeTimer]struct{}
}

// timerKind tells the state machine's timers (AfterFunc: start_secs,
// start_timeout, stop_timeout, backoff) from the probe schedule (NewTimer).
type timerKind int

const (
	stateTimer timerKind = iota + 1
	probeTimer
)

type fakeTimer struct {
	c    *fakeClock
	f    func()         // stateTimer
	ch   chan time.Time // probeTimer
	when time.Time      // guarded by c.mu
	dur  time.Duration  // as last set
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), active: map[*fakeTimer]struct{}{}}
}

// use makes the supervisor run on c (a mod for startSupervisor).
func (c *fakeClock) use(o *Options) { o.Clock = c }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	t := &fakeTimer{c: c, f: f}
	t.Reset(d)
	return t
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, was := t.c.active[t]
	delete(t.c.active, t)
	t.drain()
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	_, was := c.active[t]
	t.drain()
	t.when, t.dur = c.now.Add(d), d
	c.active[t] = struct{}{}
	due := c.due()
	c.mu.Unlock()
	fireAll(due)
	return was
}

// drain empties the channel, as Stop and Reset of a *time.Timer do.
func (t *fakeTimer) drain() {
	if t.ch != nil {
		select {
		case <-t.ch:
		default:
		}
	}
}

// due removes and returns the active timers whose deadline has come,
// earliest first (c.mu held).
func (c *fakeClock) due() []*fakeTimer {
	var out []*fakeTimer
	for t := range c.active {
		if !t.when.After(c.now) {
			out = append(out, t)
			delete(c.active, t)
		}
	}
	slices.SortFunc(out, func(a, b *fakeTimer) int { return a.when.Compare(b.when) })
	return out
}

func fireAll(ts []*fakeTimer) {
	for _, t := range ts {
		if t.f != nil {
			go t.f()
			continue
		}
		select {
		case t.ch <- t.when:
		default:
		}
	}
}

// Advance moves the clock d forward and fires every timer that comes due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	due := c.due()
	c.mu.Unlock()
	fireAll(due)
}

// find returns the deadline and duration of the earliest active timer of
// kind whose duration is d (any duration when d is 0).
func (c *fakeClock) find(kind timerKind, d time.Duration) (when time.Time, dur time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t := range c.active {
		if (kind == stateTimer) != (t.f != nil) || (d != 0 && t.dur != d) {
			continue
		}
		if !ok || t.when.Before(when) {
			when, dur, ok = t.when, t.dur, true
		}
	}
	return when, dur, ok
}

// fire waits until a timer of kind and duration d (any when 0) is active,
// moves the clock to its deadline (firing it and anything due before) and
// returns its duration. It returns as soon as the clock has moved, not once
// the work the timer sets off is done: a probe fired so may still be under
// way (see waitPending).
func (c *fakeClock) fire(tb testing.TB, kind timerKind, d time.Duration) time.Duration {
	tb.Helper()
	when, dur := c.waitPending(tb, kind, d)
	c.advanceTo(when)
	return dur
}

// waitPending waits until a timer of kind and duration d (any when 0) is
// active and returns its deadline and duration, moving nothing. The probe
// loop arms its timer again only after its probe has run and been reported,
// so after firing a probe, waitPending(probeTimer) waits for that probe.
func (c *fakeClock) waitPending(tb testing.TB, kind timerKind, d time.Duration) (when time.Time, dur time.Duration) {
	tb.Helper()
	waitFor(tb, 20*time.Second, "a pending timer", func() bool {
		var ok bool
		when, dur, ok = c.find(kind, d)
		return ok
	})
	return when, dur
}

// advanceTo moves the clock to when (never back), firing everything due.
func (c *fakeClock) advanceTo(when time.Time) {
	c.mu.Lock()
	if when.After(c.now) {
		c.now = when
	}
	due := c.due()
	c.mu.Unlock()
	fireAll(due)
}

// fireUntil fires the pending timer of kind and duration d each time there
// is one, until cond holds.
func (c *fakeClock) fireUntil(tb testing.TB, kind timerKind, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	waitFor(tb, 20*time.Second, what, func() bool {
		if cond() {
			return true
		}
		if when, _, ok := c.find(kind, d); ok {
			c.advanceTo(when)
		}
		return false
	})
}

// runStateTimers fires the state timers as they come until stop is closed.
func (c *fakeClock) runStateTimers(stop <-chan struct{}) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if when, _, ok := c.find(stateTimer, 0); ok {
			c.advanceTo(when)
		}
	}
}

// leaveBackoff waits for the program's BACKOFF, fires its backoff timer and
// waits for the next run to begin; it returns the delay. In BACKOFF the
// backoff timer is the program's only state timer: the run's start and stop
// timers were stopped when it ended.
func (h *harness) leaveBackoff(c *fakeClock, name string) time.Duration {
	h.t.Helper()
	h.waitState(name, StateBackoff, 20*time.Second)
	p := h.s.program(name)
	_, spawns, _ := p.watchSpawns()
	d := c.fire(h.t, stateTimer, 0)
	waitFor(h.t, 20*time.Second, name+" spawned again", func() bool {
		_, n, _ := p.watchSpawns()
		return n > spawns
	})
	return d
}

func TestFakeClock(t *testing.T) {
	c := newFakeClock()
	start := c.Now()
	fired := make(chan string, 4)
	c.AfterFunc(2*time.Second, func() { fired <- "2s" })
	stopped := c.AfterFunc(time.Second, func() { fired <- "stopped" })
	tm := c.NewTimer(3 * time.Second)
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop of an active timer, then of a stopped one")
	}
	c.Advance(1999 * time.Millisecond)
	select {
	case f := <-fired:
		t.Fatalf("%s fired early", f)
	default:
	}
	c.Advance(time.Millisecond)
	if f := <-fired; f != "2s" {
		t.Errorf("fired %s", f)
	}
	if d := c.fire(t, probeTimer, 0); d != 3*time.Second {
		t.Errorf("fire = %s", d)
	}
	if at := <-tm.C(); at != start.Add(3*time.Second) || c.Now() != at {
		t.Errorf("timer sent %s, clock at %s", at, c.Now())
	}
	if tm.Reset(0) {
		t.Error("Reset of a fired timer reported it active")
	}
	<-tm.C() // Reset(0) fires at once
}
