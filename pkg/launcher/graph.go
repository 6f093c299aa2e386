package launcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// normalize copies programs, fills in the defaults a hand-built config may
// lack, and checks names, commands and dependencies.
func normalize(programs []*config.Program) ([]*config.Program, error) {
	var errs []error
	out := make([]*config.Program, 0, len(programs))
	byName := map[string]*config.Program{}
	for _, src := range programs {
		if src == nil {
			continue
		}
		c := *src
		if c.Health != nil {
			h := *c.Health
			if h.Interval <= 0 {
				h.Interval = 10 * time.Second
			}
			if h.Timeout <= 0 {
				h.Timeout = 5 * time.Second
			}
			if h.Failures <= 0 {
				h.Failures = 3
			}
			c.Health = &h
		}
		if c.Restart == "" {
			c.Restart = config.RestartAlways
		}
		if c.StopSignal == "" {
			c.StopSignal = "SIGTERM"
		}
		switch {
		case c.Name == "":
			errs = append(errs, errors.New("program without a name"))
			continue
		case byName[c.Name] != nil:
			errs = append(errs, fmt.Errorf("program %q: defined twice", c.Name))
			continue
		case len(c.Command) == 0 || c.Command[0] == "":
			errs = append(errs, fmt.Errorf("program %q: empty command", c.Name))
		}
		switch c.Restart {
		case config.RestartAlways, config.RestartOnFailure, config.RestartNever:
		default:
			errs = append(errs, fmt.Errorf("program %q: restart %q: want always, on-failure or never", c.Name, c.Restart))
		}
		byName[c.Name] = &c
		out = append(out, &c)
	}
	for _, c := range out {
		for _, d := range c.DependsOn {
			if byName[d] == nil {
				errs = append(errs, fmt.Errorf("program %q: depends_on %q: %w", c.Name, d, ErrUnknownProgram))
			}
		}
	}
	if len(errs) == 0 {
		for _, cyc := range config.Cycles(out) {
			var chain strings.Builder
			for _, p := range cyc {
				chain.WriteString(p.Name + " -> ")
			}
			chain.WriteString(cyc[0].Name)
			errs = append(errs, fmt.Errorf("dependency cycle: %s", chain.String()))
		}
	}
	return out, errors.Join(errs...)
}

// closure returns the named programs and all their dependencies.
func (s *Supervisor) closure(names []string) (map[string]*program, error) {
	set := map[string]*program{}
	queue := append([]string(nil), names...)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if set[n] != nil {
			continue
		}
		p := s.program(n)
		if p == nil {
			return nil, fmt.Errorf("%q: %w", n, ErrUnknownProgram)
		}
		set[n] = p
		queue = append(queue, p.currentConfig().DependsOn...)
	}
	return set, nil
}

// startGraph starts names and their dependencies, each once its
// dependencies are RUNNING. persistent (autostart) waits for a dependency as
// long as ctx allows, even through its failures; otherwise a failed
// dependency fails its dependents.
func (s *Supervisor) startGraph(ctx context.Context, names []string, persistent bool) error {
	set, err := s.closure(names)
	if err != nil {
		return err
	}
	type result struct {
		done chan struct{}
		err  error
	}
	res := map[string]*result{}
	for n := range set {
		res[n] = &result{done: make(chan struct{})}
	}
	var wg sync.WaitGroup
	for n, p := range set {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := res[n]
			defer close(r.done)
			for _, d := range p.currentConfig().DependsOn {
				dep := set[d]
				if persistent {
					if err := s.waitReady(ctx, p, dep); err != nil {
						r.err = fmt.Errorf("start %q: %w", n, err)
						return
					}
					continue
				}
				if !s.Ready(d) {
					p.note(fmt.Sprintf("waiting for %q", d))
				}
				select {
				case <-res[d].done:
				case <-ctx.Done():
					r.err = fmt.Errorf("start %q: waiting for %q: %w", n, d, ctx.Err())
					return
				}
				if res[d].err != nil {
					p.note(fmt.Sprintf("dependency %q failed to start", d))
					r.err = fmt.Errorf("start %q: dependency %q did not start", n, d)
					return
				}
			}
			p.note("")
			r.err = s.startOne(ctx, p)
		}()
	}
	wg.Wait()
	var errs []error
	for _, n := range s.topo(set) {
		if res[n].err != nil {
			errs = append(errs, res[n].err)
		}
	}
	return errors.Join(errs...)
}

// waitReady waits until dep is RUNNING and healthy, showing why p waits.
func (s *Supervisor) waitReady(ctx context.Context, p, dep *program) error {
	for {
		st, _, ch := dep.watch()
		if st.State == StateRunning && (st.Health == HealthHealthy || st.Health == HealthNone) {
			return nil
		}
		p.note(fmt.Sprintf("waiting for %q (%s)", dep.name, st.State))
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q: %w", dep.name, ctx.Err())
		}
	}
}

// startOne starts p and waits until it is RUNNING or has failed.
func (s *Supervisor) startOne(ctx context.Context, p *program) error {
	runs0, err := p.do(command{kind: cmdStart})
	if err != nil {
		return err
	}
	for {
		st, runs, ch := p.watch()
		if runs > runs0 || st.State == StateRunning {
			return nil
		}
		switch st.State {
		case StateFatal, StateExited, StateStopped:
			return fmt.Errorf("start %q: %s: %s", p.name, st.State, st.Message)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("start %q: %w (%s %s)", p.name, ctx.Err(), st.State, st.Message)
		}
	}
}

// stopGraph stops names, each after those of its dependents that are among
// names. quit also ends the programs' loops (shutdown).
func (s *Supervisor) stopGraph(ctx context.Context, names []string, quit bool) error {
	set := map[string]*program{}
	for _, n := range names {
		if p := s.program(n); p != nil {
			set[n] = p
		}
	}
	dependents := map[string][]string{}
	for n, p := range set {
		for _, d := range p.currentConfig().DependsOn {
			if set[d] != nil {
				dependents[d] = append(dependents[d], n)
			}
		}
	}
	done := map[string]chan struct{}{}
	errs := map[string]error{}
	for n := range set {
		done[n] = make(chan struct{})
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for n, p := range set {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[n])
			for _, d := range dependents[n] {
				select {
				case <-done[d]:
				case <-ctx.Done():
					mu.Lock()
					errs[n] = fmt.Errorf("stop %q: %w", n, ctx.Err())
					mu.Unlock()
					return
				}
			}
			if err := s.stopOne(ctx, p, quit); err != nil {
				mu.Lock()
				errs[n] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var all []error
	for _, n := range s.topo(set) {
		if errs[n] != nil {
			all = append(all, errs[n])
		}
	}
	return errors.Join(all...)
}

// stopOne stops p and waits until it is no longer running.
func (s *Supervisor) stopOne(ctx context.Context, p *program, quit bool) error {
	kind := cmdStop
	if quit {
		kind = cmdQuit
	}
	spawns0, err := p.do(command{kind: kind})
	if err != nil {
		if quit {
			return nil // already gone
		}
		return err
	}
	if quit {
		select {
		case <-p.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stop %q: %w", p.name, ctx.Err())
		}
	}
	for {
		st, spawns, ch := p.watchSpawns()
		switch st.State {
		case StateStopped, StateExited, StateFatal:
			return nil
		}
		if spawns > spawns0 {
			// A start that came after this stop already began a new run,
			// so the run this stop was for has ended.
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("stop %q: %w (%s)", p.name, ctx.Err(), st.State)
		}
	}
}

// topo orders the programs of set in config order (for stable messages).
func (s *Supervisor) topo(set map[string]*program) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(set))
	for _, n := range s.order {
		if set[n] != nil {
			out = append(out, n)
		}
	}
	for n := range set {
		if s.progs[n] == nil {
			out = append(out, n)
		}
	}
	return out
}

// note sets the message of a STOPPED program (why it has not started yet).
func (p *program) note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snap.State == StateStopped && p.snap.Message != msg {
		p.snap.Message = msg
	}
}
