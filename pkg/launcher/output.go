package launcher

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
)

const (
	// maxLine is the longest line kept whole; longer ones are split.
	maxLine = 16 << 10
	// tailLines is how many lines the in-memory tail keeps per program.
	tailLines = 1000
	// followBuffer is how many lines a slow follower may lag before lines
	// are dropped for it (the program is never blocked by a reader).
	followBuffer = 1024
)

// output captures one program's stdout and stderr: every line goes to the
// program's log file, to glmctl's log and to a bounded in-memory tail.
type output struct {
	log hclog.Logger

	mu        sync.Mutex
	file      *rotatingFile // nil: no log file
	ring      []string
	next      int // ring write position
	full      bool
	followers map[chan string]struct{}
}

func newOutput(log hclog.Logger) *output {
	return &output{log: log, ring: make([]string, tailLines), followers: map[chan string]struct{}{}}
}

// setFile (re)opens the program's log file; an empty path closes it.
func (o *output) setFile(cfg config.ProgramLog) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.file != nil && o.file.path == cfg.Path && o.file.maxSize == cfg.MaxSize && o.file.keep == cfg.Keep {
		return nil
	}
	if o.file != nil {
		o.file.close()
		o.file = nil
	}
	if cfg.Path == "" {
		return nil
	}
	f, err := openRotating(cfg.Path, cfg.MaxSize, cfg.Keep)
	if err != nil {
		return err
	}
	o.file = f
	return nil
}

// reopen closes and reopens the log file (after an external rotation).
func (o *output) reopen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.file == nil {
		return nil
	}
	o.file.close()
	return o.file.open()
}

func (o *output) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.file != nil {
		o.file.close()
		o.file = nil
	}
}

// read splits r into lines until EOF or an error; a line longer than
// maxLine is emitted in pieces.
func (o *output) read(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			o.line(stream, bytes.TrimRight(b, "\r\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// line records one line of output.
func (o *output) line(stream string, b []byte) {
	s := string(b)
	o.mu.Lock()
	if o.file != nil {
		if err := o.file.writeLine(b); err != nil && !o.file.failed {
			o.file.failed = true
			o.log.Error("cannot write program log", "path", o.file.path, "error", err)
		}
	}
	o.ring[o.next] = s
	o.next++
	if o.next == len(o.ring) {
		o.next, o.full = 0, true
	}
	for ch := range o.followers {
		select {
		case ch <- s:
		default: // a slow follower loses lines; the program never waits
		}
	}
	o.mu.Unlock()
	o.log.Log(guessLevel(s), s, "stream", stream)
}

// tail returns up to n of the latest lines, oldest first.
func (o *output) tail(n int) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	have := o.next
	if o.full {
		have = len(o.ring)
	}
	if n <= 0 || n > have {
		n = have
	}
	out := make([]string, 0, n)
	for i := n; i > 0; i-- {
		out = append(out, o.ring[(o.next-i+len(o.ring))%len(o.ring)])
	}
	return out
}

// follow registers a follower; call the returned func to unregister it.
func (o *output) follow() (chan string, func()) {
	ch := make(chan string, followBuffer)
	o.mu.Lock()
	o.followers[ch] = struct{}{}
	o.mu.Unlock()
	return ch, func() {
		o.mu.Lock()
		delete(o.followers, ch)
		o.mu.Unlock()
	}
}

// guessLevel picks an hclog level from the first words of a line (vLLM and
// Python logging put the level up front); Info when nothing matches.
func guessLevel(line string) hclog.Level {
	head := line
	if len(head) > 48 {
		head = head[:48]
	}
	head = strings.ToUpper(head)
	switch {
	case strings.Contains(head, "ERROR"), strings.Contains(head, "CRITICAL"), strings.Contains(head, "FATAL"),
		strings.Contains(head, "PANIC"), strings.HasPrefix(head, "TRACEBACK"):
		return hclog.Error
	case strings.Contains(head, "WARN"):
		return hclog.Warn
	case strings.Contains(head, "DEBUG"):
		return hclog.Debug
	case strings.Contains(head, "TRACE"):
		return hclog.Trace
	}
	return hclog.Info
}

// rotatingFile is an O_APPEND log file rotated by size: path.1 … path.keep.
type rotatingFile struct {
	path    string
	maxSize int64 // 0: never rotate
	keep    int
	f       *os.File
	size    int64
	failed  bool // an error was already logged
}

func openRotating(path string, maxSize int64, keep int) (*rotatingFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("program log: %w", err)
	}
	r := &rotatingFile{path: path, maxSize: maxSize, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("program log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("program log: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *rotatingFile) writeLine(b []byte) error {
	if r.f == nil {
		if err := r.open(); err != nil {
			return err
		}
	}
	n := int64(len(b)) + 1
	if r.maxSize > 0 && r.size > 0 && r.size+n > r.maxSize {
		if err := r.rotate(); err != nil {
			return err
		}
	}
	buf := make([]byte, 0, n)
	buf = append(append(buf, b...), '\n')
	w, err := r.f.Write(buf)
	r.size += int64(w)
	if err != nil {
		return fmt.Errorf("program log: %w", err)
	}
	r.failed = false
	return nil
}

// rotate shifts path.N-1 → path.N … path → path.1 and opens a fresh path.
func (r *rotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	if r.keep <= 0 {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("program log: %w", err)
		}
		return r.open()
	}
	_ = os.Remove(r.path + "." + strconv.Itoa(r.keep))
	for i := r.keep - 1; i >= 1; i-- {
		_ = os.Rename(r.path+"."+strconv.Itoa(i), r.path+"."+strconv.Itoa(i+1))
	}
	if err := os.Rename(r.path, r.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("program log: %w", err)
	}
	return r.open()
}

func (r *rotatingFile) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}
