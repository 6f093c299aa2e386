package launcher

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"time"
)

// A supervisor short of file descriptors (EMFILE, ENFILE: a descriptor flood
// against the guard), memory (ENOMEM) or processes (EAGAIN from fork or
// clone) is starved. What fails then is glmctl, not the program: a spawn
// that fails so is retried after the usual backoff without counting towards
// start_retries, and a health probe that cannot run is not a failed probe.

// starvedRetryMin is the shortest delay before another try after a starved
// spawn, so that a zero backoff does not spin while descriptors are short.
const starvedRetryMin = time.Second

// starvedErrnos are the errors of a starved supervisor.
var starvedErrnos = [...]syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EAGAIN, syscall.ENOMEM}

// starved reports whether err says that glmctl or the system ran short of
// descriptors, memory or processes, which a later try can overcome.
func starved(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range starvedErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// probeStarved is starved for a probe's error, except for an EAGAIN from
// connect: that is a unix socket whose listen backlog is full, a server that
// stopped accepting, which is a real failure.
func probeStarved(err error) bool {
	var se *os.SyscallError
	if errors.As(err, &se) && se.Syscall == "connect" {
		return false
	}
	return starved(err)
}

// errnoError is an error known by its text whose errno was lost on the way
// (the keeper's report, os/user's cgo lookups, which format it with %v);
// errors.Is finds the errno again.
type errnoError struct {
	msg   string
	errno syscall.Errno
}

func (e *errnoError) Error() string { return e.msg }
func (e *errnoError) Unwrap() error { return e.errno }

// withStarvedErrno returns err, wrapped so that starved sees it when its
// text ends with the message of one of starvedErrnos.
func withStarvedErrno(err error) error {
	if err == nil || starved(err) {
		return err
	}
	for _, e := range starvedErrnos {
		if strings.HasSuffix(err.Error(), ": "+e.Error()) {
			return &errnoError{msg: err.Error(), errno: e}
		}
	}
	return err
}
