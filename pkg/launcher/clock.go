package launcher

import "time"

// Clock is the Supervisor's time source. It runs the state machine's timers
// (start_secs, start_timeout, stop_timeout, backoff and the stable run that
// resets it), the health probe schedule, and stamps Status.Started and
// Event.Time. Timers that bound real work on processes and sockets stay on
// the wall clock: a probe's own timeout, the wait for a program's pipes
// after its keeper exited, the fallback kill of a keeper that does not
// finish, and the sampling of GPU programs' process trees.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
	// NewTimer returns a Timer whose channel receives once d has passed.
	NewTimer(d time.Duration) Timer
}

// Timer is one timer of a Clock, like a *time.Timer.
type Timer interface {
	// C is the channel the time is sent on; nil for AfterFunc timers.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
	// Reset makes the timer fire d from now; it reports whether it was active.
	Reset(d time.Duration) bool
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{time.AfterFunc(d, f)}
}

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
