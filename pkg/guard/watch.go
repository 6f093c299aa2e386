package guard

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long the watcher waits after the last event in a burst
// (an editor's write + rename, a Kubernetes symlink swap) before reloading.
const debounce = 100 * time.Millisecond

// watch reloads the keys, limits and TLS files when anything changes in the
// directories holding them. Directories, not files, are watched: editors save
// by renaming a new file over the old one and Kubernetes swaps a symlink, and
// both would leave a watch on the file itself pointing at a deleted inode.
// The reload functions skip files whose content did not change.
func (g *Guard) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch files: %w", err)
	}
	defer w.Close()
	files := []string{g.cfg.KeysFile, g.cfg.LimitsFile}
	if g.cfg.TLS != nil {
		files = append(files, g.cfg.TLS.Cert, g.cfg.TLS.Key)
	}
	dirs := map[string]bool{}
	for _, f := range files {
		if f == "" {
			continue
		}
		d := filepath.Dir(f)
		if dirs[d] {
			continue
		}
		if err := w.Add(d); err != nil {
			g.log.Warn("cannot watch directory; reload with SIGHUP", "dir", d, "error", err)
			continue
		}
		dirs[d] = true
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			g.log.Warn("file watcher error", "error", err)
			timer.Reset(debounce) // events may have been lost: re-check
		case <-timer.C:
			_ = g.Reload() // logged and counted inside
		}
	}
}
