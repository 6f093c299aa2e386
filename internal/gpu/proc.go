package gpu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// ProcessTree returns pid followed by all its descendants, found by walking
// the parent links in /proc/*/stat. PIDs are those of glmctl's own PID
// namespace (the host's when glmctl runs on the host, as NVML's are), so
// this works for a program run as init of its own PID namespace too: take
// the tree of the process glmctl spawned. Take it while that process still
// runs; orphans of a dead parent are re-parented elsewhere. A pid that does
// not exist gives an error wrapping os.ErrNotExist.
func ProcessTree(pid int) ([]int, error) {
	return processTree("/proc", pid)
}

func processTree(procRoot string, pid int) ([]int, error) {
	if _, err := os.Stat(filepath.Join(procRoot, strconv.Itoa(pid))); err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", procRoot, err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		ppid, err := parentPID(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile, or not readable
		}
		children[ppid] = append(children[ppid], child)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		kids := children[tree[i]]
		slices.Sort(kids)
		for _, k := range kids {
			if !slices.Contains(tree, k) { // guards against PID reuse loops
				tree = append(tree, k)
			}
		}
	}
	return tree, nil
}

// parentPID reads the ppid field of a /proc/PID/stat file. The command name
// (field 2) is in parentheses and may hold spaces and parentheses itself, so
// fields are counted after its last ')'.
func parentPID(statPath string) (int, error) {
	b, err := os.ReadFile(statPath)
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0, errors.New("malformed stat")
	}
	return strconv.Atoi(string(f[1])) // f[0] is the state
}
