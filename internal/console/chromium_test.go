package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browser is a headless Debian chromium driven over the DevTools protocol
// (chromedp), started for one test and stopped by PID at its cleanup.
type browser struct {
	t   *testing.T
	ctx context.Context
	pid int

	mu     sync.Mutex
	pids   map[int]string // every chromium process seen: pid → its command line
	errors []string       // CSP violations and uncaught exceptions
	logs   []string       // other console errors (e.g. a 401 after sign-out)
}

// chromiumPath finds the browser: $CHROMIUM, else Debian's chromium.
func chromiumPath() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH: install Debian's chromium (apt-get install chromium; .ci/run does it) or set $CHROMIUM")
}

// startBrowser starts chromium headless with a 1280×900 window. A missing
// or broken browser fails the test: it never skips.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := chromiumPath()
	if err != nil {
		t.Fatalf("the browser test needs chromium: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// It only visits the test's own loopback server; the sandbox would
		// need user namespaces, which CI containers often lack.
		chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", "en-US"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx, pids: map[int]string{}}
	// The first call starts the browser and must not carry a timeout (it
	// would stop the browser): a watchdog bounds it instead.
	started := make(chan error, 1)
	go func() {
		err := chromedp.Listen(ctx, b.onEvent)
		if err == nil {
			_, err = chromedp.Call(ctx, log.Enable, cdp.Empty{})
		}
		if err == nil {
			_, err = chromedp.Call(ctx, runtime.Enable, cdp.Empty{})
		}
		started <- err
	}()
	select {
	case err = <-started:
	case <-time.After(60 * time.Second):
		err = errors.New("no answer within 60 s")
	}
	if err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	b.pid = chromedp.FromContext(ctx).Browser.Process().Pid
	b.notePIDs()
	t.Cleanup(func() {
		b.notePIDs()
		cancelCtx()
		cancelAlloc() // kills the browser and waits for it
		b.checkGone()
	})
	return b
}

func (b *browser) onEvent(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.errors = append(b.errors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError {
			return
		}
		msg := fmt.Sprintf("%s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		if strings.Contains(ev.Entry.Text, "Content Security Policy") || ev.Entry.Source == log.EntrySourceJavascript {
			b.errors = append(b.errors, msg)
		} else {
			b.logs = append(b.logs, msg)
		}
	}
}

// notePIDs records the browser's process and all its descendants.
func (b *browser) notePIDs() {
	parents := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid := parentPID(pid); ppid > 0 {
			parents[ppid] = append(parents[ppid], pid)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	queue := []int{b.pid}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if _, seen := b.pids[pid]; !seen {
			b.pids[pid] = cmdline(pid)
		}
		queue = append(queue, parents[pid]...)
	}
}

// parentPID reads the parent of pid from /proc (0: gone).
func parentPID(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func cmdline(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))
}

// alive reports whether pid still runs the same program (a zombie, or a
// reused pid running something else, counts as gone).
func alive(pid int, cmd string) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(raw)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z") {
		return false
	}
	return cmdline(pid) == cmd
}

// checkGone waits (up to 10 s) for every chromium process seen to end;
// any left is an error, and is killed by its PID.
func (b *browser) checkGone() {
	b.mu.Lock()
	pids := make(map[int]string, len(b.pids))
	for p, c := range b.pids {
		pids[p] = c
	}
	b.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []int
		for p, c := range pids {
			if alive(p, c) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.t.Errorf("chromium processes left after the test: %v; killing them", left)
			for _, p := range left {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs actions with a deadline, failing the test on an error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that reads a value, with a deadline.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// text returns the text of the first element matching the CSS selector.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(get(b, "read "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// waitText polls (10 s deadline) until the element's text satisfies ok.
func (b *browser) waitText(sel string, ok func(string) bool, want string) string {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[*string](fmt.Sprintf(
			`(function(){var e=document.querySelector(%q);return e?e.textContent:null})()`, sel)))
		cancel()
		if err == nil && got != nil {
			last = strings.TrimSpace(*got)
			if ok(last) {
				return last
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("%s: text %q, want %s", sel, last, want)
	return ""
}

func equals(want string) func(string) bool { return func(s string) bool { return s == want } }

func contains(want string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, want) }
}

// location returns the page's URL.
func (b *browser) location() string {
	b.t.Helper()
	return get(b, "read location", chromedp.Location())
}

// problems returns the CSP violations and exceptions seen so far.
func (b *browser) problems() ([]string, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...), append([]string(nil), b.logs...)
}

// screenshotPath is where the overview's screenshot goes: a temporary file
// unless -screenshot names one (the README's is made with
// -screenshot ../../docs/console.png).
func screenshotPath(t *testing.T) string {
	if *screenshotFlag != "" {
		p, err := filepath.Abs(*screenshotFlag)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return filepath.Join(t.TempDir(), "console.png")
}
