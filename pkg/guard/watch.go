package guard

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	// debounce is how long the watcher waits after the last relevant event
	// of a burst (an editor's write + rename, a Kubernetes symlink swap)
	// before reloading.
	debounce = 100 * time.Millisecond
	// maxDelay bounds the wait when relevant events never stop.
	maxDelay = time.Second
)

// watchSet is what the watcher listens to: directories, and the names in
// them that matter.
type watchSet struct {
	dirs  map[string]bool
	names map[string]bool // base names of the files and of their symlink targets
}

func (g *Guard) watchTargets() watchSet {
	ws := watchSet{dirs: map[string]bool{}, names: map[string]bool{}}
	cfg := g.snap.Load().cfg
	files := []string{cfg.KeysFile, cfg.LimitsFile}
	if t := g.static.TLS; t != nil {
		files = append(files, t.Cert, t.Key)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		ws.dirs[filepath.Dir(f)] = true
		ws.names[filepath.Base(f)] = true
		if real, err := filepath.EvalSymlinks(f); err == nil && real != f {
			ws.dirs[filepath.Dir(real)] = true
			ws.names[filepath.Base(real)] = true
		}
	}
	return ws
}

// relevant reports whether an event may change one of the files: an event
// on one of their names, or on a Kubernetes "..data"-style entry.
func (ws watchSet) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	return ws.names[base] || strings.HasPrefix(base, "..")
}

// watch reloads the keys, limits and TLS files when they change. The
// directories holding them are watched, not the files: editors save by
// renaming a new file over the old one and Kubernetes swaps a symlink, and
// both would leave a watch on the file itself pointing at a deleted inode.
// The reload functions skip files whose content did not change.
func (g *Guard) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch files: %w", err)
	}
	defer w.Close()
	var ws watchSet
	target := func() {
		next := g.watchTargets()
		for d := range ws.dirs {
			if !next.dirs[d] {
				_ = w.Remove(d)
			}
		}
		for d := range next.dirs {
			if ws.dirs[d] {
				continue
			}
			if err := w.Add(d); err != nil {
				g.log.Warn("cannot watch directory; reload with SIGHUP", "dir", d, "error", err)
			}
		}
		ws = next
	}
	target()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var first time.Time // first event of the pending burst
	schedule := func() {
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		wait := debounce
		if left := first.Add(maxDelay).Sub(now); left < wait {
			wait = max(left, 0)
		}
		timer.Reset(wait)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.retargetCh:
			target()
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ws.relevant(ev) {
				schedule()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			g.log.Warn("file watcher error", "error", err)
			schedule() // events may have been lost: re-check
		case <-timer.C:
			first = time.Time{}
			_ = g.Reload() // logged and counted inside
		}
	}
}

// retargetWatch tells the watcher that the files to watch may have changed
// (a reload named other keys or limits files).
func (g *Guard) retargetWatch() {
	select {
	case g.retargetCh <- struct{}{}:
	default:
	}
}
