package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procs names the processes a measure is about: the proxy (nginx's master,
// or the `glmctl up` process) and, with children, their direct children too
// (nginx's workers). They are listed again at each sample, so a worker that
// nginx replaced mid-run is still counted from then on.
type procs struct {
	pids     []int
	children bool
	clkTck   float64
}

func (p procs) list() []int {
	out := append([]int(nil), p.pids...)
	if !p.children {
		return out
	}
	for _, pid := range p.pids {
		out = append(out, childrenOf(pid)...)
	}
	return out
}

// childrenOf reads /proc/PID/task/*/children.
func childrenOf(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// cpuSeconds is utime+stime of the processes (all their threads), from
// /proc/PID/stat, in seconds; with per-pid figures keyed by pid.
func (p procs) cpuSeconds() (float64, map[int]float64) {
	per := map[int]float64{}
	var total float64
	for _, pid := range p.list() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after "(comm) ": state is field 3; utime 14, stime 15.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		s := (ut + st) / p.clkTck
		per[pid] = s
		total += s
	}
	return total, per
}

// cpuDelta is the CPU the processes used between two samples; a process
// that appeared in between counts from zero, one that went away counts
// nothing more.
func cpuDelta(before, after map[int]float64) float64 {
	var d float64
	for pid, a := range after {
		d += a - before[pid]
	}
	return d
}

// rssKiB is the sum of VmRSS of the processes.
func (p procs) rssKiB() (int64, int) {
	var total int64
	n := 0
	for _, pid := range p.list() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					k, _ := strconv.ParseInt(f[0], 10, 64)
					total += k
					n++
				}
			}
		}
	}
	return total, n
}

// fds counts the open descriptors of the processes.
func (p procs) fds() int {
	n := 0
	for _, pid := range p.list() {
		e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err == nil {
			n += len(e)
		}
	}
	return n
}

// machine is the whole machine's CPU counters (/proc/stat "cpu" line).
type machine struct{ busy, total float64 }

func readMachine() machine {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machine{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var m machine
	for i, s := range f[1:] {
		v, _ := strconv.ParseFloat(s, 64)
		if i >= 8 { // guest, guest_nice are already in user, nice
			break
		}
		m.total += v
		if i != 3 && i != 4 { // idle, iowait
			m.busy += v
		}
	}
	return m
}

// busyShare is the share of all CPUs that was busy between a and b.
func busyShare(a, b machine) float64 {
	if b.total <= a.total {
		return 0
	}
	return (b.busy - a.busy) / (b.total - a.total)
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// window samples everything a measure reports about the machine at its
// start and end.
type window struct {
	p       procs
	start   time.Time
	cpu0    map[int]float64
	self0   time.Duration
	mach0   machine
	elapsed time.Duration
	proxy   float64 // CPU seconds of the proxy processes
	self    time.Duration
	busy    float64
}

func openWindow(p procs) *window {
	w := &window{p: p}
	_, w.cpu0 = p.cpuSeconds()
	w.self0 = selfCPU()
	w.mach0 = readMachine()
	w.start = time.Now()
	return w
}

func (w *window) close() {
	w.elapsed = time.Since(w.start)
	_, cpu1 := w.p.cpuSeconds()
	w.proxy = cpuDelta(w.cpu0, cpu1)
	w.self = selfCPU() - w.self0
	w.busy = busyShare(w.mach0, readMachine())
}
