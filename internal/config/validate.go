package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// crossCheck validates what spans blocks: dependency targets and cycles,
// guard.program, and program GPUs against gpu.count.
func (d *decoder) crossCheck(cfg *Config) {
	names := make([]string, 0, len(cfg.Programs))
	for _, p := range cfg.Programs {
		names = append(names, p.Name)
	}
	for _, p := range cfg.Programs {
		meta := d.progs[p]
		listed := map[string]bool{}
		for i, dep := range p.DependsOn {
			rng := meta.depends[i]
			switch {
			case listed[dep]:
				d.c.at(rng, "depends_on lists %q twice: list each program once", dep)
			case dep == p.Name:
				d.c.at(rng, "program %q depends on itself: remove %q from its depends_on", p.Name, dep)
			case cfg.Program(dep) == nil:
				if c := closest(dep, names); c != "" && c != p.Name {
					d.c.at(rng, "program %q depends on %q, which is not defined: did you mean %q?", p.Name, dep, c)
				} else {
					d.c.at(rng, "program %q depends on %q, which is not defined: define program %q or remove it from depends_on", p.Name, dep, dep)
				}
			}
			listed[dep] = true
		}
		if cfg.GPU != nil && cfg.GPU.Count > 0 && meta.gpusFound {
			for i, g := range p.GPUs {
				if g >= cfg.GPU.Count {
					d.c.at(meta.gpus[i], "gpus index %d is out of range: gpu.count = %d, so indices run from 0 to %d", g, cfg.GPU.Count, cfg.GPU.Count-1)
				}
			}
		}
	}
	d.cycles(cfg)
	d.warnings(cfg)
	d.listenClashes(cfg)
	if g := cfg.Guard; g != nil && g.MaxModelLen == 0 {
		g.MaxModelLen = DefaultMaxModelLen
		if p := cfg.Program(g.Program); p != nil {
			if n := maxModelLenArg(p.Command); n > 0 {
				g.MaxModelLen = n
			}
		}
	}
	if g := cfg.Guard; g != nil && g.Program != "" && cfg.Program(g.Program) == nil {
		if c := closest(g.Program, names); c != "" {
			d.c.at(d.guardProgram, "guard program %q is not defined: did you mean %q? (write program = \"\" for no gating)", g.Program, c)
		} else {
			d.c.at(d.guardProgram, "guard program %q is not defined: name one of the program blocks, or write program = \"\" for no gating", g.Program)
		}
	}
}

// sameListen reports whether two listen addresses would collide.
// maxModelLenArg returns the value of vLLM's --max-model-len in a command
// line ("--max-model-len 4096" or "--max-model-len=4096"), or 0.
func maxModelLenArg(cmd []string) int {
	for i, a := range cmd {
		v, ok := strings.CutPrefix(a, "--max-model-len=")
		if !ok && a == "--max-model-len" && i+1 < len(cmd) {
			v, ok = cmd[i+1], true
		}
		if ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

func sameListen(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	// Go binds "localhost" to its first address, 127.0.0.1.
	canon := func(h string) string {
		if strings.EqualFold(h, "localhost") {
			return "127.0.0.1"
		}
		if a, err := netip.ParseAddr(h); err == nil {
			return a.Unmap().String()
		}
		return h
	}
	return canon(ha) == canon(hb) || wildcard(ha) || wildcard(hb)
}

// listenClashes refuses two of glmctl's listeners (guard, metrics, console)
// on one port: the second would fail to bind at start.
func (d *decoder) listenClashes(cfg *Config) {
	type listener struct {
		name, addr string
		at         hcl.Range
	}
	var ls []listener
	if g := cfg.Guard; g != nil {
		rng := d.guardListen
		if rng == (hcl.Range{}) {
			rng = d.guardBlock
		}
		ls = append(ls, listener{"guard", g.Listen, rng})
	}
	if m := cfg.Metrics; m != nil {
		ls = append(ls, listener{"metrics", m.Listen, d.metricsListen})
	}
	if c := cfg.Console; c != nil {
		ls = append(ls, listener{"console", c.Listen, d.consoleListen})
	}
	for i, a := range ls {
		for _, b := range ls[i+1:] {
			if sameListen(a.addr, b.addr) {
				d.c.at(b.at, "%s listen %q and %s listen %q (%s) would share a port: give each its own port",
					b.name, b.addr, a.name, a.addr, pos(d.c.filename, a.at))
			}
		}
	}
}

// warnings records what loads but is probably not what was meant.
func (d *decoder) warnings(cfg *Config) {
	if cfg.Guard != nil && cfg.Audit == nil {
		d.warn.at(d.guardBlock, "no audit block: requests through the guard are not recorded; add audit { path = %q }", DefaultAuditPath)
	}
	d.idleGPUSettings(cfg)
	for _, p := range cfg.Programs {
		meta := d.progs[p]
		if h := p.Health; h != nil && h.Timeout >= h.Interval {
			d.warn.at(meta.health, "health timeout %s is not shorter than interval %s: make timeout shorter so probes do not overlap", h.Timeout, h.Interval)
		}
		for i, dep := range p.DependsOn {
			if q := cfg.Program(dep); q != nil && q != p && q.Health == nil {
				d.warn.at(meta.depends[i], "program %q waits for %q, which has no health block: it counts as ready %s after it starts, loaded or not; add a health block to %q", p.Name, dep, q.StartSecs, dep)
			}
		}
	}
	if g := cfg.Guard; g != nil && (strings.HasPrefix(g.Upstream, "http://") || strings.HasPrefix(g.Upstream, "https://")) {
		d.warn.at(d.guardUpstream, "guard upstream %q is a TCP port: any local user can reach the model there, around the guard; run vLLM with --uds in a directory only glmctl and vLLM's user can enter, and write upstream = \"unix:///run/glmctl/vllm/vllm.sock\"", g.Upstream)
	}
	if cfg.Policy != nil && cfg.Guard == nil {
		d.c.at(d.policyBlock, "a policy block without a guard block has no effect: add guard { … } or remove the policy block")
	}
	if cfg.Console != nil && cfg.Guard == nil {
		d.c.at(d.consoleListen, "a console block without a guard block has no effect: signing in takes an admin key of guard.keys_file; add guard { … } or remove the console block")
	}
	if c := cfg.Console; c != nil {
		if host, _, err := net.SplitHostPort(c.Listen); err == nil && !IsLoopback(host) {
			d.warn.at(d.consoleListen, "console listen %q is reachable beyond this machine without TLS: admin keys and session cookies would cross the network in clear; listen on 127.0.0.1 and reach it through an SSH tunnel or a TLS proxy", c.Listen)
		}
	}
	if m := cfg.Metrics; m != nil && m.BearerTokenFile == "" {
		if host, _, err := net.SplitHostPort(m.Listen); err == nil && !IsLoopback(host) {
			d.warn.at(d.metricsListen, "metrics listen %q is reachable beyond this machine without a bearer token: /metrics names keys and models; listen on 127.0.0.1 or set bearer_token_file", m.Listen)
		}
	}
	if g := cfg.Guard; g != nil && g.Program != "" {
		if q := cfg.Program(g.Program); q != nil && q.Health == nil {
			d.warn.at(d.guardProgram, "guard program %q has no health block: the guard opens %s after it starts, loaded or not; add a health block to %q", q.Name, q.StartSecs, q.Name)
		}
	}
}

// cycles reports each dependency cycle once, at the depends_on entry of the
// cycle's first program in file order that closes it.
func (d *decoder) cycles(cfg *Config) {
	for _, c := range Cycles(cfg.Programs) {
		d.reportCycle(c)
	}
}

// reportCycle reports the cycle through path (each depends on the next, the
// last on the first), rotated to start at the program defined first.
func (d *decoder) reportCycle(path []*Program) {
	first := 0
	for i, p := range path {
		if d.progs[p].label.Start.Byte < d.progs[path[first]].label.Start.Byte {
			first = i
		}
	}
	rotated := append(append([]*Program{}, path[first:]...), path[:first]...)
	chain := make([]string, 0, len(rotated)+1)
	for _, p := range rotated {
		chain = append(chain, `"`+p.Name+`"`)
	}
	chain = append(chain, `"`+rotated[0].Name+`"`)
	from, to := rotated[0], rotated[1%len(rotated)]
	rng := d.progs[from].label
	for i, dep := range from.DependsOn {
		if dep == to.Name {
			rng = d.progs[from].depends[i]
			break
		}
	}
	d.c.at(rng, "dependency cycle %s: remove one of these depends_on entries", strings.Join(chain, " -> "))
}

// idleGPUSettings refuses gpu settings that act only on programs with
// gpus when no program lists any: the GPUs are still watched (metrics,
// XID events in the log), but those settings do nothing.
func (d *decoder) idleGPUSettings(cfg *Config) {
	if cfg.GPU == nil {
		return
	}
	for _, p := range cfg.Programs {
		if len(p.GPUs) > 0 {
			return
		}
	}
	// (gpu.required still decides whether a missing NVML is logged as an
	// error or a warning.)
	for _, name := range []string{"count", "min_free_memory", "release_timeout", "restart_on_xid"} {
		at, ok := d.c.places["gpu."+name]
		if !ok || d.c.hasProblemAt(at) {
			continue
		}
		d.c.at(hcl.Range{Start: at}, "gpu.%s has no effect: it acts on programs that list gpus, and none does; add gpus = [0, 1, 2, 3] to the model's program block, or remove it", name)
	}
}
