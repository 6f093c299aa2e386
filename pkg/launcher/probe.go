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

	"github.com/glmctl/glmctl/pkg/config"
)

// startingPoll caps the probe interval while a program is starting, so that
// readiness is noticed quickly even with a long health interval.
const startingPoll = 500 * time.Millisecond

// probeResult is the outcome of one health probe.
type probeResult struct {
	ok      bool
	refused bool // nothing listens yet: "still loading" during start
	err     error
}

// prober runs one kind of health probe.
type prober struct {
	h      *config.Health
	dir    string
	env    []string
	cred   *syscall.Credential // exec probes run as the program's user
	client *http.Client
}

func newProber(h *config.Health, dir string, env []string, cred *syscall.Credential) *prober {
	p := &prober{h: h, dir: dir, env: env, cred: cred}
	if h.HTTP != "" {
		tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
		if h.UnixSocket != "" {
			sock := h.UnixSocket
			tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
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
		var d net.Dialer
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", p.h.TCP); err == nil {
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
// program loop: quickly while starting, every interval once RUNNING.
func (in *instance) probeLoop(h *config.Health) {
	p := newProber(h, in.cfg.Directory, in.env, in.cred)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-in.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(in.ctx, h.Timeout)
		r := p.probe(ctx)
		cancel()
		if in.ctx.Err() != nil {
			return
		}
		in.p.send(event{kind: evProbe, in: in, probe: r})
		wait := h.Interval
		if !in.ready.Load() {
			wait = min(wait, startingPoll)
		}
		t.Reset(wait)
	}
}
