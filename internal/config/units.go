package config

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"syscall"
)

// sizeUnit returns the byte multiple of a lower-case size suffix.
func sizeUnit(unit string) (int64, bool) {
	switch unit {
	case "", "b":
		return 1, true
	case "kb":
		return 1000, true
	case "mb":
		return 1000 * 1000, true
	case "gb":
		return 1000 * 1000 * 1000, true
	case "tb":
		return 1000 * 1000 * 1000 * 1000, true
	case "kib":
		return 1 << 10, true
	case "mib":
		return 1 << 20, true
	case "gib":
		return 1 << 30, true
	case "tib":
		return 1 << 40, true
	}
	return 0, false
}

// ParseSize parses a byte size such as "100MiB", "4MiB", "70GiB", "1GB",
// "1.5GiB" or "4194304". Units are case-insensitive; KB, MB, GB and TB are
// powers of 1000, KiB, MiB, GiB and TiB powers of 1024.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, errors.New("no number")
	}
	mult, ok := sizeUnit(unit)
	if !ok {
		return 0, errors.New("unknown unit")
	}
	f, _, err := big.ParseFloat(num, 10, 128, big.ToNearestEven)
	if err != nil {
		return 0, errors.New("bad number")
	}
	f.Mul(f, new(big.Float).SetInt64(mult))
	if f.Cmp(big.NewFloat(math.MaxInt64)) >= 0 {
		return 0, errors.New("too large")
	}
	n, _ := f.Int64()
	if !f.IsInt() {
		return 0, errors.New("not a whole number of bytes")
	}
	return n, nil
}

type namedSignal struct {
	name string
	sig  syscall.Signal
}

// signals lists the stop signals a program may ask for.
func signals() []namedSignal {
	return []namedSignal{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
		{"SIGQUIT", syscall.SIGQUIT},
		{"SIGHUP", syscall.SIGHUP},
		{"SIGKILL", syscall.SIGKILL},
		{"SIGUSR1", syscall.SIGUSR1},
		{"SIGUSR2", syscall.SIGUSR2},
	}
}

// signalNames lists the canonical stop signal names.
func signalNames() []string {
	out := make([]string, len(signals()))
	for i, s := range signals() {
		out[i] = s.name
	}
	return out
}

// canonicalSignal turns "TERM", "sigterm" or "SIGTERM" into "SIGTERM".
func canonicalSignal(s string) (string, bool) {
	up := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	for _, sig := range signals() {
		if sig.name == up {
			return up, true
		}
	}
	return "", false
}

// Signal returns the signal a stop_signal name stands for ("SIGTERM" or
// "TERM"), and false for a name glmctl does not accept.
func Signal(name string) (syscall.Signal, bool) {
	c, ok := canonicalSignal(name)
	if !ok {
		return 0, false
	}
	for _, sig := range signals() {
		if sig.name == c {
			return sig.sig, true
		}
	}
	return 0, false
}
