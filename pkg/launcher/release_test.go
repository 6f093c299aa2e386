package launcher

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// releaseCalls records AwaitRelease calls.
type releaseCalls struct {
	mu    sync.Mutex
	calls map[string][][]int
	err   error
}

func (r *releaseCalls) hook(_ context.Context, p *config.Program, pids []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[p.Name] = append(r.calls[p.Name], slices.Clone(pids))
	return r.err
}

func (r *releaseCalls) get(name string) [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls[name])
}

// TestAwaitReleaseGetsPreviousTree: before a GPU program starts again, the
// supervisor hands AwaitRelease the host PIDs of the previous run's whole
// tree (grandchildren and setsid escapees included); never on the first
// start, never for programs without gpus.
func TestAwaitReleaseGetsPreviousTree(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	g := prog("g", selfCmd("tree", pidFile))
	g.GPUs = []int{0, 1}
	g.StopTimeout = 30 * time.Second
	plain := prog("plain", selfCmd("sleep"))
	rc := &releaseCalls{calls: map[string][][]int{}}
	h := startSupervisor(t, []*config.Program{g, plain},
		func(o *Options) { o.AwaitRelease = rc.hook },
		func(s *Supervisor) { s.treeSample = 50 * time.Millisecond })
	waitFor(t, 20*time.Second, "5 pids", func() bool { return countPIDs(t, pidFile) >= 5 })
	h.waitState("g", StateRunning, 20*time.Second)
	h.waitState("plain", StateRunning, 20*time.Second)
	if c := rc.get("g"); len(c) != 0 {
		t.Fatalf("AwaitRelease called on the first start: %v", c)
	}
	live := liveTree(t, 4, func() []int { return keeperTree(h.status("g").PID)[1:] }) // host PIDs, without the keeper
	if err := h.s.Restart(ctxT(t, 60*time.Second), "g", "plain"); err != nil {
		t.Fatal(err)
	}
	calls := rc.get("g")
	if len(calls) != 1 {
		t.Fatalf("AwaitRelease calls for g = %v, want one", calls)
	}
	for _, pid := range live {
		if !slices.Contains(calls[0], pid) {
			t.Errorf("AwaitRelease pids %v lack %d of the previous tree %v", calls[0], pid, live)
		}
	}
	if c := rc.get("plain"); len(c) != 0 {
		t.Errorf("AwaitRelease called for a program without gpus: %v", c)
	}
}

// TestAwaitReleaseErrorIsFailedStart: GPU memory still held by the previous
// run keeps the program from starting, and says why.
func TestAwaitReleaseErrorIsFailedStart(t *testing.T) {
	g := prog("g", selfCmd("sleep"))
	g.GPUs = []int{0}
	g.StartRetries = 2
	rc := &releaseCalls{calls: map[string][][]int{}}
	h := startSupervisor(t, []*config.Program{g},
		func(o *Options) { o.AwaitRelease = rc.hook },
		func(s *Supervisor) { s.treeSample = 50 * time.Millisecond })
	h.waitState("g", StateRunning, 20*time.Second)
	rc.mu.Lock()
	rc.err = errors.New("GPU memory still held: PID 42 on GPU 0")
	rc.mu.Unlock()
	err := h.s.Restart(ctxT(t, 60*time.Second), "g")
	if err == nil || !strings.Contains(err.Error(), "FATAL") {
		t.Fatalf("Restart = %v, want FATAL", err)
	}
	if st := h.status("g"); !strings.Contains(st.Message, "gpu release: GPU memory still held") {
		t.Errorf("status = %+v", st)
	}
}
