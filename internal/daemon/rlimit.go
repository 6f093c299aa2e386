package daemon

import (
	"golang.org/x/sys/unix"
)

// fdReserve is the number of file descriptors kept out of the guard's
// reach for the supervisor: keeper pipes and processes, health probes, log
// and audit files, the control socket and metrics scrapes. The guard's
// connections (client and upstream side) get the rest of RLIMIT_NOFILE.
const fdReserve = 256

// raiseNOFILE raises the soft RLIMIT_NOFILE to the hard limit (the Go
// runtime does this too on most builds; doing it here makes it explicit and
// lets the daemon know the figure) and returns the soft limit in force.
func raiseNOFILE() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			return lim.Cur, err
		}
		lim = want
	}
	return lim.Cur, nil
}

// guardFDBudget is how many descriptors the guard's connections may use
// under a soft limit of nofile (0: no limit worth applying).
func guardFDBudget(nofile uint64) int {
	if nofile == unix.RLIM_INFINITY || nofile > 1<<30 {
		return 0
	}
	if nofile <= 2*fdReserve {
		// A tiny limit: still leave the supervisor half of it.
		return int(nofile / 2)
	}
	return int(nofile) - fdReserve
}

// FDBudgetHere is the guard's descriptor budget New would find in this
// process after raising the soft limit to the hard one, and that hard limit
// (for glmctl check, which may run under other limits than the daemon).
func FDBudgetHere() (budget int, nofile uint64) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0
	}
	return guardFDBudget(lim.Max), lim.Max
}
