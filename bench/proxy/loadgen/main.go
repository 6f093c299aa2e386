// Command loadgen is the load generator of bench/proxy (make bench-proxy):
// it sends OpenAI chat requests, plain and streamed, to the stand-in vLLM
// directly, through nginx or through glmctl's guard, and reports each
// measure as one JSON line. It reads the proxy's CPU (utime+stime from
// /proc/PID/stat) and RSS itself, over exactly the window it counts
// requests in. Standard library only; a hand-rolled HTTP/1.1 client keeps
// its own CPU per request low, since it shares the machine's cores with
// the proxy under test.
//
//	loadgen closed   -addr A -key K -kind chat|stream -conns N -duration D [-pids P -children]
//	loadgen open     -addr A -key K -rate R -duration D -conns N
//	loadgen hold     -addr A -key K -n N -pids P [-children]
//	loadgen check    -addr A -key K [-auth]
//	loadgen wait     -addr A [-timeout D]
//	loadgen freeport -n N
//	loadgen report   -in results.jsonl -md results.md [-csv F -svg F -header F]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

const usageText = `usage: loadgen closed|open|hold|check|wait|freeport|report [flags]
  loadgen <command> -h lists the flags of a command`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usageText)
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"closed": cmdClosed, "open": cmdOpen, "hold": cmdHold, "check": cmdCheck,
		"wait": cmdWait, "freeport": cmdFreeport, "report": cmdReport,
	}
	f, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "loadgen: unknown command %q\n%s\n", os.Args[1], usageText)
		os.Exit(2)
	}
	if err := f(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// common are the flags every load command has.
type common struct {
	fs        *flag.FlagSet
	addr      string
	key       string
	model     string
	kind      string
	maxTokens int
	measure   string
	path      string
	rep       int
	pids      string
	children  bool
	clkTck    float64
	out       string
	timeout   time.Duration
}

func newCommon(name string) *common {
	c := &common{fs: flag.NewFlagSet(name, flag.ExitOnError)}
	c.fs.StringVar(&c.addr, "addr", "", "host:port to send to (required)")
	c.fs.StringVar(&c.key, "key", "", "bearer key")
	c.fs.StringVar(&c.model, "model", "glm-4.7-flash", "model name in the requests")
	c.fs.StringVar(&c.kind, "kind", "chat", "chat (non-stream) or stream")
	c.fs.IntVar(&c.maxTokens, "max-tokens", 0, "max_tokens of each request (default: 1 for chat, 64 for stream)")
	c.fs.StringVar(&c.measure, "measure", "", "label: the measure")
	c.fs.StringVar(&c.path, "path", "", "label: direct, nginx, glmctl…")
	c.fs.IntVar(&c.rep, "rep", 0, "label: repetition number")
	c.fs.StringVar(&c.pids, "pids", "", "comma-separated PIDs of the proxy (CPU and RSS are read from /proc)")
	c.fs.BoolVar(&c.children, "children", false, "count the direct children of -pids too (nginx's workers)")
	c.fs.Float64Var(&c.clkTck, "clk-tck", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK)")
	c.fs.StringVar(&c.out, "out", "", "append the JSON result line to this file too")
	c.fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "limit of one round trip")
	return c
}

func (c *common) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.addr == "" {
		return errors.New("-addr is required")
	}
	if c.kind != "chat" && c.kind != "stream" {
		return fmt.Errorf("-kind %q: chat or stream", c.kind)
	}
	if c.maxTokens == 0 {
		c.maxTokens = 1
		if c.kind == "stream" {
			c.maxTokens = 64
		}
	}
	return nil
}

func (c *common) stream() bool { return c.kind == "stream" }

func (c *common) request() []byte {
	return requestBytes(c.addr, c.key, c.model, c.stream(), c.maxTokens)
}

func (c *common) procs() (procs, error) {
	p := procs{children: c.children, clkTck: c.clkTck}
	for _, s := range strings.Split(c.pids, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return p, fmt.Errorf("-pids: %q is not a PID", s)
		}
		p.pids = append(p.pids, n)
	}
	return p, nil
}

// emit labels and writes a result.
func (c *common) emit(r Result) error {
	r.Measure, r.Path, r.Rep, r.Kind = c.measure, c.path, c.rep, c.kind
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	fmt.Fprintf(os.Stderr, "loadgen: %-9s %-14s rep %d: %s\n", r.Measure, r.Path, r.Rep, summary(r))
	if _, err := os.Stdout.Write(b); err != nil {
		return err
	}
	if c.out != "" {
		f, err := os.OpenFile(c.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	return nil
}

// summary is a one-line account of a result for the log.
func summary(r Result) string {
	if r.Open > 0 || r.RSSIdleKiB > 0 {
		return fmt.Sprintf("%d streams open (%d failed), RSS %d → %d KiB, %.1f KiB per stream, %d fds",
			r.Open, r.Errors, r.RSSIdleKiB, r.RSSOpenKiB, r.KiBPerStream, r.FDsOpen)
	}
	s := fmt.Sprintf("%.0f/s, p50 %.3f ms, p99 %.3f ms, ttfb p50 %.3f ms", r.PerSec, r.LatP50, r.LatP99, r.TTFBP50)
	if r.Rate > 0 {
		s = fmt.Sprintf("offered %.0f/s: ", r.Rate) + s
	}
	if r.ProxyCPUUsPerReq > 0 {
		s += fmt.Sprintf(", proxy %.1f µs CPU/req", r.ProxyCPUUsPerReq)
	}
	s += fmt.Sprintf(", loadgen %.1f µs CPU/req, machine %.0f %% busy", r.ClientCPUUsPerReq, 100*r.MachineBusy)
	if r.Errors > 0 {
		s += fmt.Sprintf(", %d ERRORS %v (%s)", r.Errors, r.Statuses, r.ErrorSample)
	}
	if r.Unsent > 0 {
		s += fmt.Sprintf(", %d unsent", r.Unsent)
	}
	return s
}

func cmdClosed(args []string) error {
	c := newCommon("closed")
	conns := c.fs.Int("conns", 64, "connections, each with one request at a time")
	warmup := c.fs.Duration("warmup", time.Second, "load before the measuring window")
	duration := c.fs.Duration("duration", 10*time.Second, "measuring window")
	if err := c.parse(args); err != nil {
		return err
	}
	p, err := c.procs()
	if err != nil {
		return err
	}
	r := runClosed(closedOpts{addr: c.addr, req: c.request(), stream: c.stream(), conns: *conns,
		warmup: *warmup, duration: *duration, procs: p, timeout: c.timeout})
	return c.emit(r)
}

func cmdOpen(args []string) error {
	c := newCommon("open")
	rate := c.fs.Float64("rate", 1000, "requests per second, scheduled at even intervals")
	duration := c.fs.Duration("duration", 3*time.Second, "how long requests are scheduled")
	conns := c.fs.Int("conns", 64, "connections the scheduled requests are sent over")
	drain := c.fs.Duration("drain", 5*time.Second, "after the schedule ends, how long to wait for the queue to empty")
	if err := c.parse(args); err != nil {
		return err
	}
	if c.stream() {
		return errors.New("open: only -kind chat")
	}
	p, err := c.procs()
	if err != nil {
		return err
	}
	r := runOpen(openOpts{addr: c.addr, req: c.request(), rate: *rate, duration: *duration, conns: *conns,
		drain: *drain, procs: p, timeout: c.timeout})
	return c.emit(r)
}

func cmdHold(args []string) error {
	c := newCommon("hold")
	n := c.fs.Int("n", 1000, "streams to open and hold")
	parallel := c.fs.Int("parallel", 64, "streams being opened at once")
	settle := c.fs.Duration("settle", 2*time.Second, "wait after the last stream opened before reading RSS")
	openTimeout := c.fs.Duration("open-timeout", 2*time.Minute, "all streams must be open within this")
	c.kind = "stream"
	if err := c.parse(args); err != nil {
		return err
	}
	c.kind = "stream"
	p, err := c.procs()
	if err != nil {
		return err
	}
	r, err := runHold(holdOpts{addr: c.addr, req: c.request(), n: *n, parallel: *parallel, settle: *settle,
		timeout: *openTimeout, procs: p})
	if err != nil {
		return err
	}
	return c.emit(r)
}

// cmdCheck proves a path works before it is measured: a chat answers 200
// with a chat.completion, a stream 200 with events and [DONE], and with
// -auth an unknown key gets a JSON 401.
func cmdCheck(args []string) error {
	c := newCommon("check")
	auth := c.fs.Bool("auth", false, "also check that an unknown key gets a JSON 401")
	if err := c.parse(args); err != nil {
		return err
	}
	cn := newConn(c.addr, 10*time.Second)
	cn.keep = 4096
	defer cn.close()
	r, err := cn.roundTrip(requestBytes(c.addr, c.key, c.model, false, 1), false)
	if err := check(r, err, false); err != nil {
		return fmt.Errorf("chat: %w: %.200s", err, r.body)
	}
	if !bytes.Contains(r.body, []byte(`"chat.completion"`)) {
		return fmt.Errorf("chat: not a chat.completion: %.200s", r.body)
	}
	r, err = cn.roundTrip(requestBytes(c.addr, c.key, c.model, true, 4), true)
	if err := check(r, err, true); err != nil {
		return fmt.Errorf("stream: %w: %.200s", err, r.body)
	}
	msg := fmt.Sprintf("%s: chat 200, stream 200 with %d events and [DONE]", c.addr, r.events)
	if *auth {
		r, err = cn.roundTrip(requestBytes(c.addr, "sk-not-a-key-of-this-bench", c.model, false, 1), false)
		if err != nil {
			return fmt.Errorf("unknown key: %w", err)
		}
		if r.status != 401 || !json.Valid(r.body) {
			return fmt.Errorf("unknown key: want a JSON 401, got %d: %.200s", r.status, r.body)
		}
		msg += fmt.Sprintf(", unknown key 401 %.120s", bytes.TrimSpace(r.body))
	}
	fmt.Println(msg)
	return nil
}

// cmdWait polls GET /health until it answers 200 (or anything, with -any).
func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	path := fs.String("path", "/health", "path to GET")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	anyStatus := fs.Bool("any", false, "any HTTP answer will do, not only 200")
	if err := fs.Parse(args); err != nil {
		return err
	}
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *addr + "\r\nConnection: close\r\n\r\n")
	deadline := time.Now().Add(*timeout)
	var last error
	for time.Now().Before(deadline) {
		c := newConn(*addr, 2*time.Second)
		r, err := c.roundTrip(req, false)
		c.close()
		if err == nil && (r.status == 200 || *anyStatus) {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("status %d", r.status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s%s not ready after %s: %v", *addr, *path, *timeout, last)
}

// cmdFreeport prints n free loopback TCP ports, one a line.
func cmdFreeport(args []string) error {
	fs := flag.NewFlagSet("freeport", flag.ExitOnError)
	n := fs.Int("n", 1, "how many")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range *n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}
