package config

import (
	"sort"
	"strings"
)

// Cycles returns every dependency cycle among progs once, each as the path
// of programs that depend on the next (the last on the first). depends_on
// entries naming no program, or the program itself, are not cycles here
// (they are reported as such by Load). It is the one cycle search of
// glmctl: the config reports cycles with positions, the launcher refuses
// them.
func Cycles(progs []*Program) [][]*Program {
	byName := make(map[string]*Program, len(progs))
	for _, p := range progs {
		byName[p.Name] = p
	}
	const (
		unvisited = iota
		active
		done
	)
	state := map[string]int{}
	seen := map[string]bool{}
	var out [][]*Program
	var stack []*Program
	var visit func(p *Program)
	visit = func(p *Program) {
		state[p.Name] = active
		stack = append(stack, p)
		for _, dep := range p.DependsOn {
			q := byName[dep]
			if q == nil || q == p {
				continue
			}
			switch state[dep] {
			case unvisited:
				visit(q)
			case active:
				start := 0
				for i, s := range stack {
					if s == q {
						start = i
					}
				}
				cyc := append([]*Program(nil), stack[start:]...)
				names := make([]string, len(cyc))
				for i, c := range cyc {
					names[i] = c.Name
				}
				sort.Strings(names)
				if key := strings.Join(names, "\x00"); !seen[key] {
					seen[key] = true
					out = append(out, cyc)
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[p.Name] = done
	}
	for _, p := range progs {
		if state[p.Name] == unvisited {
			visit(p)
		}
	}
	return out
}
