package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// startingPoll caps the probe interval while a program is starting, so that
// readiness is noticed quickly even with a long health interval.
const startingPoll = 500 * time.Millisecond

// probeResult is the outcome of one health probe.
type probeResult struct {
	ok      bool
	refused bool // nothing listens yet: "still loading" during start
	// starved: the probe could not run for want of descriptors, memory or
	// processes in glmctl; it says nothing about the program.
	starved bool
	err     error
}

// dialFunc opens a probe's connection.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// prober runs one kind of health probe.
type prober struct {
	h      *config.Health
	dir    string
	env    []string
	cred   *syscall.Credential // exec probes run as the program's user
	dial   dialFunc            // HTTP and TCP probes
	client *http.Client
}

// newProber returns a prober for h; dial nil is a plain net.Dialer.
func newProber(h *config.Health, dir string, env []string, cred *syscall.Credential, dial dialFunc) *prober {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	p := &prober{h: h, dir: dir, env: env, cred: cred, dial: dial}
	if h.HTTP != "" {
		tr := &http.Transport{DisableKeepAlives: true, Proxy: nil, DialContext: dial}
		if h.UnixSocket != "" {
			sock := h.UnixSocket
			tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dial(ctx, "unix", sock)
			}
		}
		p.client = &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return p
}

// probe runs the check once within ctx.
func (p *prober) probe(ctx context.Context) probeResult {
	var err error
	switch {
	case p.h.HTTP != "":
		err = p.probeHTTP(ctx)
	case p.h.TCP != "":
		var c net.Conn
		if c, err = p.dial(ctx, "tcp", p.h.TCP); err == nil {
			c.Close()
		}
	case len(p.h.Exec) > 0:
		err = p.probeExec(ctx)
	default:
		return probeResult{ok: true}
	}
	if err == nil {
		return probeResult{ok: true}
	}
	if probeStarved(err) {
		return probeResult{starved: true, err: err}
	}
	refused := errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
	return probeResult{refused: refused, err: err}
}

func (p *prober) probeHTTP(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.h.HTTP, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

func (p *prober) probeExec(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, p.h.Exec[0], p.h.Exec[1:]...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("timed out after %s", p.h.Timeout)
		}
		if len(out) > 200 {
			out = out[:200]
		}
		if len(out) > 0 {
			return fmt.Errorf("%w: %s", err, out)
		}
		return err
	}
	return nil
}

// probeLoop probes until the instance ends, reporting each result to the
// program loop: quickly until one passes, every interval once RUNNING (on
// the supervisor's clock; the probe's own timeout is wall time).
func (in *instance) probeLoop(h *config.Health) {
	p := newProber(h, in.cfg.Directory, in.env, in.cred, in.p.sup.probeDial)
	t := in.p.sup.clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-in.ctx.Done():
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(in.ctx, h.Timeout)
		r := p.probe(ctx)
		cancel()
		if in.ctx.Err() != nil {
			return
		}
		in.p.send(event{kind: evProbe, in: in, probe: r})
		wait := h.Interval
		if !in.ready.Load() && !r.ok {
			// Still starting (a passing probe makes it RUNNING).
			wait = min(wait, startingPoll)
		}
		t.Reset(wait)
	}
}
