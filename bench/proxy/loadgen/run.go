package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one measurement, written as one JSON line.
type Result struct {
	Measure string  `json:"measure"`
	Path    string  `json:"path"`
	Rep     int     `json:"rep"`
	Kind    string  `json:"kind,omitempty"`
	Conns   int     `json:"conns,omitempty"`
	Rate    float64 `json:"rate,omitempty"` // offered requests/s (open loop)
	Seconds float64 `json:"seconds"`        // length of the measuring window

	Requests    int64            `json:"requests"` // completed without error in the window
	Errors      int64            `json:"errors"`
	ErrorSample string           `json:"error_sample,omitempty"`
	Statuses    map[string]int64 `json:"statuses,omitempty"`
	PerSec      float64          `json:"per_sec"`

	// Latency from the request's write (closed loop) or from its scheduled
	// time (open loop: queueing in the load generator counts, as in wrk2),
	// and time to the status line; milliseconds.
	LatP50  float64 `json:"lat_p50_ms"`
	LatP90  float64 `json:"lat_p90_ms"`
	LatP99  float64 `json:"lat_p99_ms"`
	LatMax  float64 `json:"lat_max_ms"`
	TTFBP50 float64 `json:"ttfb_p50_ms"`
	TTFBP99 float64 `json:"ttfb_p99_ms"`
	// Open loop: latency from the moment the request was written.
	SvcP50  float64 `json:"svc_p50_ms,omitempty"`
	SvcP99  float64 `json:"svc_p99_ms,omitempty"`
	Unsent  int64   `json:"unsent,omitempty"` // scheduled but never sent before the drain deadline
	Events  float64 `json:"events_per_stream,omitempty"`
	Offered int64   `json:"offered,omitempty"`

	ProxyPIDs         []int   `json:"proxy_pids,omitempty"`
	ProxyCPUSeconds   float64 `json:"proxy_cpu_s,omitempty"`
	ProxyCPUUsPerReq  float64 `json:"proxy_cpu_us_per_req,omitempty"`
	ClientCPUUsPerReq float64 `json:"client_cpu_us_per_req,omitempty"`
	ClientCPUShare    float64 `json:"client_cpu_cores,omitempty"` // load generator CPU ÷ wall time
	ProxyCPUShare     float64 `json:"proxy_cpu_cores,omitempty"`  // proxy CPU ÷ wall time
	MachineBusy       float64 `json:"machine_busy"`               // share of all CPUs busy

	// hold (memory per open stream)
	Open         int     `json:"open,omitempty"`
	RSSIdleKiB   int64   `json:"rss_idle_kib,omitempty"`
	RSSOpenKiB   int64   `json:"rss_open_kib,omitempty"`
	KiBPerStream float64 `json:"kib_per_stream,omitempty"`
	FDsOpen      int     `json:"fds_open,omitempty"`
}

// sample is one completed request.
type sample struct {
	end  int64 // UnixNano
	lat  int64 // ns
	ttfb int64 // ns
	svc  int64 // ns (open loop)
}

// tally collects samples and errors from many goroutines.
type tally struct {
	mu       sync.Mutex
	samples  []sample
	errors   int64
	statuses map[string]int64
	errMsg   string
	events   int64
	streams  int64
}

func newTally() *tally { return &tally{statuses: map[string]int64{}} }

func (t *tally) add(s []sample, events, streams int64) {
	t.mu.Lock()
	t.samples = append(t.samples, s...)
	t.events += events
	t.streams += streams
	t.mu.Unlock()
}

func (t *tally) fail(status int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.errors++
	key := "io"
	if status != 0 {
		key = fmt.Sprint(status)
	}
	t.statuses[key]++
	if t.errMsg == "" && err != nil {
		t.errMsg = err.Error()
	}
}

// check judges a reply: a 200, and for a stream its [DONE].
func check(r reply, err error, stream bool) error {
	switch {
	case err != nil:
		return err
	case r.status != 200:
		return fmt.Errorf("status %d", r.status)
	case stream && !r.done:
		return fmt.Errorf("stream ended without [DONE] (%d events)", r.events)
	}
	return nil
}

// percentile is the nearest-rank percentile of sorted ns values, in ms.
func percentile(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.9999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / 1e6
}

func sortedBy(s []sample, f func(sample) int64) []int64 {
	out := make([]int64, len(s))
	for i := range s {
		out[i] = f(s[i])
	}
	slices.Sort(out)
	return out
}

// fill computes the latency figures of res from samples.
func (res *Result) fill(s []sample, open bool) {
	lat := sortedBy(s, func(x sample) int64 { return x.lat })
	res.LatP50, res.LatP90, res.LatP99 = percentile(lat, .50), percentile(lat, .90), percentile(lat, .99)
	if len(lat) > 0 {
		res.LatMax = float64(lat[len(lat)-1]) / 1e6
	}
	tt := sortedBy(s, func(x sample) int64 { return x.ttfb })
	res.TTFBP50, res.TTFBP99 = percentile(tt, .50), percentile(tt, .99)
	if open {
		sv := sortedBy(s, func(x sample) int64 { return x.svc })
		res.SvcP50, res.SvcP99 = percentile(sv, .50), percentile(sv, .99)
	}
}

func (res *Result) fillCPU(w *window, n int64) {
	res.Seconds = w.elapsed.Seconds()
	res.ProxyPIDs = w.p.list()
	res.ProxyCPUSeconds = w.proxy
	res.MachineBusy = w.busy
	res.ClientCPUShare = w.self.Seconds() / w.elapsed.Seconds()
	if len(w.p.pids) > 0 {
		res.ProxyCPUShare = w.proxy / w.elapsed.Seconds()
	}
	if n > 0 {
		res.ClientCPUUsPerReq = w.self.Seconds() * 1e6 / float64(n)
		if len(w.p.pids) > 0 {
			res.ProxyCPUUsPerReq = w.proxy * 1e6 / float64(n)
		}
	}
}

// closedOpts configures a closed-loop run: conns connections, each sending
// its next request when the previous answer has ended.
type closedOpts struct {
	addr     string
	req      []byte
	stream   bool
	conns    int
	warmup   time.Duration
	duration time.Duration
	procs    procs
	timeout  time.Duration
}

// runClosed counts the requests that end inside the measuring window (after
// warmup, for duration) and the proxy's CPU over the same window.
func runClosed(o closedOpts) Result {
	var stop atomic.Bool
	t := newTally()
	var wg sync.WaitGroup
	conns := make([]*conn, o.conns)
	// Connections are opened a few at a time: a burst of SYNs beyond the
	// listen backlog would add seconds of retransmits to the warm-up.
	sem := make(chan struct{}, 64)
	for i := range conns {
		c := newConn(o.addr, o.timeout)
		conns[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			if err := c.dial(); err != nil {
				<-sem
				t.fail(0, err)
				return
			}
			<-sem
			var local []sample
			var events, streams int64
			for !stop.Load() {
				r, err := c.roundTrip(o.req, o.stream)
				end := time.Now()
				if err := check(r, err, o.stream); err != nil {
					if stop.Load() {
						break
					}
					t.fail(r.status, err)
					time.Sleep(10 * time.Millisecond) // no hot loop against a refusing server
					continue
				}
				local = append(local, sample{end: end.UnixNano(), lat: int64(r.total), ttfb: int64(r.ttfb)})
				if o.stream {
					events += int64(r.events)
					streams++
				}
			}
			c.close()
			t.add(local, events, streams)
		}()
	}
	time.Sleep(o.warmup)
	w := openWindow(o.procs)
	time.Sleep(o.duration)
	w.close()
	end := w.start.Add(w.elapsed)
	stop.Store(true)
	// Streams and requests in flight end by themselves; a stuck one is cut.
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range conns {
		if nc := c.nc; nc != nil {
			_ = nc.SetDeadline(deadline)
		}
	}
	wg.Wait()

	var in []sample
	for _, s := range t.samples {
		if s.end >= w.start.UnixNano() && s.end < end.UnixNano() {
			in = append(in, s)
		}
	}
	res := Result{Conns: o.conns, Requests: int64(len(in)), Errors: t.errors, Statuses: t.statuses, ErrorSample: t.errMsg}
	res.PerSec = float64(len(in)) / w.elapsed.Seconds()
	res.fill(in, false)
	res.fillCPU(w, int64(len(in)))
	if t.streams > 0 {
		res.Events = float64(t.events) / float64(t.streams)
	}
	return res
}

// openOpts configures an open-loop run: requests scheduled at a fixed rate
// whatever the answers do, sent over conns connections.
type openOpts struct {
	addr     string
	req      []byte
	rate     float64
	duration time.Duration
	conns    int
	drain    time.Duration
	procs    procs
	timeout  time.Duration
}

// runOpen schedules rate×duration requests at even intervals. Each
// connection's goroutine takes the next request number when it is free and
// sleeps until that request is due (no hand-off between goroutines adds to
// the latency). A request's latency runs from its scheduled time when it
// was taken late — it waited for a free connection because answers were
// slow, and that wait counts: no coordinated omission, as in wrk2 — and
// from its write when it was taken in time (Go's timers wake up to 1 ms
// late; that is the load generator's, not the path's). svc is always from
// the write.
func runOpen(o openOpts) Result {
	total := int64(o.rate * o.duration.Seconds())
	t := newTally()
	var wg sync.WaitGroup
	conns := make([]*conn, o.conns)
	for i := range conns {
		c := newConn(o.addr, o.timeout)
		conns[i] = c
		if err := c.dial(); err != nil {
			t.fail(0, err)
		}
	}
	w := openWindow(o.procs)
	start := w.start.Add(5 * time.Millisecond).UnixNano()
	interval := float64(time.Second) / o.rate
	dueOf := func(i int64) int64 { return start + int64(float64(i)*interval) }
	var next atomic.Int64
	var cut atomic.Bool
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []sample
			for !cut.Load() {
				i := next.Add(1) - 1
				if i >= total {
					break
				}
				due := dueOf(i)
				from := due // a request taken late waited for a free connection: that counts
				if d := due - time.Now().UnixNano(); d > 0 {
					time.Sleep(time.Duration(d))
					from = 0 // taken in time: the timer's lateness (up to 1 ms) is the harness's, not the path's
				}
				sent := time.Now()
				if from == 0 {
					from = sent.UnixNano()
				}
				r, err := c.roundTrip(o.req, false)
				end := time.Now()
				if err := check(r, err, false); err != nil {
					t.fail(r.status, err)
					continue
				}
				local = append(local, sample{end: end.UnixNano(), lat: end.UnixNano() - from, ttfb: int64(r.ttfb), svc: int64(end.Sub(sent))})
			}
			c.close()
			t.add(local, 0, 0)
		}()
	}
	// Wait for the schedule and then the queue to end; requests not yet
	// taken at the deadline are counted as unsent, with the latency they
	// had reached by then.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var unsent []sample
	select {
	case <-done:
	case <-time.After(o.duration + o.drain):
		cut.Store(true)
		dl := time.Now()
		for i := next.Add(total) - total; i < total; i++ {
			unsent = append(unsent, sample{end: dl.UnixNano(), lat: dl.UnixNano() - dueOf(i)})
		}
		for _, c := range conns {
			if nc := c.nc; nc != nil {
				_ = nc.SetDeadline(dl.Add(2 * time.Second))
			}
		}
		<-done
	}
	w.close()
	all := append(t.samples, unsent...)
	res := Result{Conns: o.conns, Rate: o.rate, Offered: total, Requests: int64(len(t.samples)), Errors: t.errors,
		Statuses: t.statuses, ErrorSample: t.errMsg, Unsent: int64(len(unsent))}
	// Achieved rate: answers over the time from the first scheduled request
	// to the last answer.
	var last int64
	for _, s := range t.samples {
		last = max(last, s.end)
	}
	if last > start {
		res.PerSec = float64(len(t.samples)) / (float64(last-start) / 1e9)
	}
	res.fill(t.samples, true)
	// Latency percentiles count the unsent as what they had waited.
	if len(unsent) > 0 {
		lat := sortedBy(all, func(x sample) int64 { return x.lat })
		res.LatP50, res.LatP90, res.LatP99 = percentile(lat, .50), percentile(lat, .90), percentile(lat, .99)
		res.LatMax = float64(lat[len(lat)-1]) / 1e6
	}
	res.fillCPU(w, int64(len(t.samples)))
	return res
}

// holdOpts configures the memory measure: n streams opened and held.
type holdOpts struct {
	addr     string
	req      []byte
	n        int
	parallel int
	settle   time.Duration
	timeout  time.Duration
	procs    procs
}

// runHold reads the proxy's RSS idle, opens n streams (each has received
// its first event), waits settle, reads the RSS again, then closes them.
func runHold(o holdOpts) (Result, error) {
	idle, nproc := o.procs.rssKiB()
	if nproc == 0 {
		return Result{}, errors.New("no proxy process to read RSS from")
	}
	var (
		mu     sync.Mutex
		open   []net.Conn
		failed int
		errMsg string
	)
	sem := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	deadline := time.Now().Add(o.timeout)
	for range o.n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			nc, err := openStream(o.addr, o.req, deadline)
			<-sem
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if errMsg == "" {
					errMsg = err.Error()
				}
				return
			}
			open = append(open, nc)
		}()
	}
	wg.Wait()
	time.Sleep(o.settle)
	rss, _ := o.procs.rssKiB()
	fds := o.procs.fds()
	for _, nc := range open {
		_ = nc.Close()
	}
	res := Result{Open: len(open), Errors: int64(failed), ErrorSample: errMsg, RSSIdleKiB: idle, RSSOpenKiB: rss,
		FDsOpen: fds, ProxyPIDs: o.procs.list()}
	if len(open) > 0 {
		res.KiBPerStream = float64(rss-idle) / float64(len(open))
	}
	return res, nil
}

// openStream sends a stream request and returns once its first event has
// arrived; a goroutine then reads the rest until the connection closes.
func openStream(addr string, req []byte, deadline time.Time) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(deadline)
	if _, err := nc.Write(req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4<<10)
	c := &conn{nc: nc, br: br}
	var r reply
	_, chunked, _, err := c.readHead(&r)
	if err == nil && r.status != 200 {
		err = fmt.Errorf("status %d", r.status)
	}
	if err == nil && !chunked {
		err = errors.New("stream answer is not chunked")
	}
	if err == nil { // the first chunk: the first event
		var line []byte
		if line, err = br.ReadSlice('\n'); err == nil {
			if n, ok := hexSize(line); !ok || n == 0 {
				err = fmt.Errorf("bad first chunk %q", line)
			} else {
				_, err = br.Discard(int(n))
			}
		}
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	go func() { _, _ = io.Copy(io.Discard, br) }()
	return nc, nil
}
