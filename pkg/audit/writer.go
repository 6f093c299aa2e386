package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Policies and levels accepted in config.Audit.
const (
	FsyncAlways   = "always"   // fdatasync each batch before its writers return (group commit)
	FsyncInterval = "interval" // fdatasync at most every SyncInterval; write(2) before return
	FsyncNever    = "never"    // leave flushing to the kernel; write(2) before return

	OnErrorReject   = "reject"   // Write returns an error; the guard answers 503
	OnErrorContinue = "continue" // Write counts and logs the loss, returns nil

	LevelMetadata        = "metadata"         // no bodies
	LevelRequest         = "request"          // request bodies
	LevelRequestResponse = "request_response" // request and response bodies
)

// SyncInterval is how often fsync = "interval" flushes the log (and the
// .head side file) to disk: a power loss can cost at most the records
// acknowledged in the last SyncInterval; a crash of glmctl costs none.
const SyncInterval = time.Second

// Admin actions the writer itself records.
const (
	// ActionChainBreak: the file was truncated under the writer (logrotate
	// copytruncate); records between the copy and the truncation are lost.
	// verify reports the break it documents as a warning.
	ActionChainBreak = "audit.chain_break"
	// ActionTailMissing: at start the log lacked records the .head side file
	// names; verify reports it as an error.
	ActionTailMissing = "audit.tail_missing"
	// ActionTornTail: at start a partial record left by a crash was removed.
	ActionTornTail = "audit.torn_tail_removed"
)

// Errors returned by Write.
var (
	// ErrClosed: the writer was closed.
	ErrClosed = errors.New("audit writer closed")
	// ErrWrite wraps every failure to record (disk full, permission, …).
	ErrWrite = errors.New("audit record not written")
)

const (
	maxBatchRecords = 4096
	maxBatchBytes   = 4 << 20
	queueSize       = 4096
	errorLogEvery   = 10 * time.Second
)

// Options are the writer's collaborators.
type Options struct {
	Logger     hclog.Logger          // nil: no logging
	Registerer prometheus.Registerer // nil: metrics are not registered
	HMACKey    []byte                // nil: plain SHA-256 chain, identifying strings in clear
}

// request is one record on its way to the file.
type request struct {
	body       []byte
	prev, hash string // set by the writer before done
	done       chan error
}

// Writer appends records to the audit log from one goroutine, batching the
// write(2)s of concurrent callers (group commit). Safe for concurrent use.
type Writer struct {
	cfg  config.Audit
	path string
	log  hclog.Logger
	h    hasher
	m    *metrics
	reg  prometheus.Registerer

	reqs chan *request
	// lazy holds submitted records (Submit) that nothing waits on: they
	// go out with the next batch the writer commits anyway, or at the next
	// tick, instead of waking the writer for each.
	lazyMu     sync.Mutex
	lazy       []*request
	lazyClosed bool // the writer has taken its last lazy records
	reopenc    chan chan error
	quit       chan struct{}
	done       chan struct{}
	compc      chan struct{}
	wg         sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	failure   atomic.Pointer[error]

	// Owned by the loop goroutine (and Open before it starts).
	f        *os.File
	dev, ino uint64
	// pathChecked is when ensureFile last checked that w.path still names
	// the open file.
	pathChecked time.Time
	size        int64 // bytes in f as far as we know
	day         string
	last        string // hash of the last record written
	notes       []Record
	dirty       bool // written since the last fsync
	headHash    string
	buf         []byte
	failing     bool
	lastErrLog  time.Time
	lost        int
	rotateWait  time.Time
	newline     bool // a partial line is in the file: start with '\n'
}

// Open opens (creating it 0600, its directory 0700) the audit log at
// cfg.Path for appending and continues its hash chain from the last record
// of the file, or the .head side file when the file is empty. A torn final
// line left by a crash is cut off and the act recorded.
func Open(cfg *config.Audit, opts Options) (*Writer, error) {
	c := *cfg
	if err := normalize(&c); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	w := &Writer{
		cfg:     c,
		path:    c.Path,
		log:     log,
		h:       hasher{key: opts.HMACKey},
		m:       newMetrics(),
		reqs:    make(chan *request, queueSize),
		reopenc: make(chan chan error),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		compc:   make(chan struct{}, 1),
	}
	if err := os.MkdirAll(filepath.Dir(w.path), 0o700); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := w.openFile(); err != nil {
		return nil, err
	}
	if err := w.recover(); err != nil {
		w.f.Close()
		return nil, err
	}
	if opts.Registerer != nil {
		if err := w.m.register(opts.Registerer); err != nil {
			w.f.Close()
			return nil, err
		}
		w.reg = opts.Registerer
	}
	if len(w.notes) > 0 {
		if err := w.commit(nil); err != nil {
			w.f.Close()
			if w.reg != nil {
				w.m.unregister(w.reg)
			}
			return nil, err
		}
	}
	w.wg.Add(2)
	go w.loop()
	go w.maintain()
	w.kickMaintain()
	return w, nil
}

// normalize applies defaults and checks the enumerations.
func normalize(c *config.Audit) error {
	if c.Path == "" {
		return errors.New("open audit log: no path")
	}
	if c.OnError == "" {
		c.OnError = OnErrorReject
	}
	if c.Fsync == "" {
		c.Fsync = FsyncInterval
	}
	if c.Level == "" {
		c.Level = LevelMetadata
	}
	var problems []error
	switch c.OnError {
	case OnErrorReject, OnErrorContinue:
	default:
		problems = append(problems, fmt.Errorf("audit on_error %q: want reject or continue", c.OnError))
	}
	switch c.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		problems = append(problems, fmt.Errorf("audit fsync %q: want always, interval or never", c.Fsync))
	}
	switch c.Level {
	case LevelMetadata, LevelRequest, LevelRequestResponse:
	default:
		problems = append(problems, fmt.Errorf("audit level %q: want metadata, request or request_response", c.Level))
	}
	return errors.Join(problems...)
}

// openFile opens w.path for appending and records its identity and size.
func (w *Writer) openFile() error {
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return fmt.Errorf("open audit log: %w", err)
	}
	if st.Size == 0 && w.cfg.Fsync != FsyncNever {
		syncDir(filepath.Dir(w.path)) // the new file's name survives a power loss
	}
	if st.Mode&0o777 != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			w.log.Warn("audit log mode is not 0600", "path", w.path, "error", err)
		}
	}
	w.f, w.dev, w.ino, w.size = f, st.Dev, st.Ino, st.Size
	w.day = time.Now().Format(time.DateOnly)
	if st.Size > 0 {
		w.day = time.Unix(st.Mtim.Unix()).Format(time.DateOnly)
	}
	return nil
}

// recover finds the last hash of the chain and repairs a torn tail.
func (w *Writer) recover() error {
	hd, err := readHead(w.path)
	if err != nil {
		w.log.Warn("audit head unreadable; continuing from the log", "error", err)
	}
	t, err := readTail(w.f, w.size)
	if err != nil {
		return err
	}
	if t.torn > 0 {
		if err := w.f.Truncate(t.end); err != nil {
			return fmt.Errorf("open audit log: cut torn tail: %w", err)
		}
		w.log.Warn("audit log ended with a partial record (crash); removed it", "bytes", t.torn)
		w.notes = append(w.notes, Record{Stage: StageAdmin, Action: ActionTornTail, Target: filepath.Base(w.path),
			Error: fmt.Sprintf("removed %d bytes of a partial record at offset %d left by a crash", t.torn, t.end)})
		w.size = t.end
	}
	if t.last != nil {
		p, perr := parseLine(t.last)
		if perr != nil {
			// Not ours: go on from the head (verify reports the line).
			w.log.Error("audit log ends with a line that is not an audit record; continuing the chain from the .head file", "offset", t.lastStart)
			w.last, w.headHash = hd.hashOrEmpty(), hd.hashOrEmpty()
			w.notes = append(w.notes, Record{Stage: StageAdmin, Action: ActionChainBreak, Target: filepath.Base(w.path),
				Error: fmt.Sprintf("the line at offset %d is not an audit record; the chain goes on from %s%s", t.lastStart, filepath.Base(w.path), headSuffix)})
			return nil
		}
		w.last = p.hash
		if hd != nil && hd.Hash != "" && hd.Hash != p.hash && !w.hasHashAt(hd) {
			w.log.Error("audit log lacks records the .head file names: the log was cut", "head", hd.Hash)
			w.notes = append(w.notes, Record{Stage: StageAdmin, Action: ActionTailMissing, Target: filepath.Base(w.path),
				Error: fmt.Sprintf("the log ends at hash %s but %s%s names hash %s at offset %d: records were removed", p.hash, filepath.Base(w.path), headSuffix, hd.Hash, hd.Offset)})
		}
		w.headHash = hd.hashOrEmpty()
		return nil
	}
	// An empty log (just rotated): the chain goes on from the newest
	// rotated file, which a crash during rotation may have left newer than
	// the head; else from the head.
	w.last, w.headHash = hd.hashOrEmpty(), hd.hashOrEmpty()
	if name := newestSibling(w.path); name != "" {
		if h := lastHash(name); h != "" && h != w.last {
			w.log.Info("audit chain continues from the newest rotated file", "file", name)
			w.last = h
		}
	}
	return nil
}

func (h *head) hashOrEmpty() string {
	if h == nil {
		return ""
	}
	return h.Hash
}

// hasHashAt reports whether the line ending at hd.Offset in the live file
// has hash hd.Hash (the log is ahead of the head after a crash).
func (w *Writer) hasHashAt(hd *head) bool {
	if hd.File != filepath.Base(w.path) || hd.Offset < 0 || hd.Offset > w.size {
		return false
	}
	if hd.Offset == 0 {
		// The head names the record before this file (written at a reopen
		// or rotation): the file's first record must link to it.
		rc, err := os.Open(w.path)
		if err != nil {
			return false
		}
		defer rc.Close()
		line, err := newLineReader(rc).next()
		if err != nil {
			return false
		}
		p, err := parseLine(line)
		return err == nil && p.rec.Prev == hd.Hash
	}
	t, err := readTail(w.f, hd.Offset)
	if err != nil || t.torn != 0 || t.last == nil {
		return false
	}
	p, err := parseLine(t.last)
	return err == nil && p.hash == hd.Hash
}

// Write appends r to the log: it fills r.Time when zero, and r.Prev and
// r.Hash once written, and returns after the record's write(2) completed
// (and its group-commit fdatasync under fsync = "always"). Under
// on_error = "reject" a record that cannot be written gives an error
// wrapping ErrWrite; under "continue" the loss is logged and counted and Write
// returns nil. Bodies are dropped below their level; with an HMAC key, Client
// and UserAgent are written as "hmac-sha256:<hex>" (r is left as it is). If
// ctx ends first, Write returns its error, and the record may still be
// written.
func (w *Writer) Write(ctx context.Context, r *Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	body, err := w.encode(r)
	if err != nil {
		return err
	}
	req := &request{body: body, done: make(chan error, 1)}
	select {
	case w.reqs <- req:
	case <-w.quit:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("audit write: %w", ctx.Err())
	}
	select {
	case err := <-req.done:
		return req.finish(r, err)
	case <-ctx.Done():
		return fmt.Errorf("audit write: %w", ctx.Err())
	case <-w.done:
		select {
		case err := <-req.done:
			return req.finish(r, err)
		default:
			return ErrClosed
		}
	}
}

// Submit queues r without waiting for it to be written: for records no
// answer waits on, such as the guard's "completed" record, written after
// the client has its answer. It does not wake the writer: the record goes
// out with the next batch (the next Write) or at the next tick (at most
// SyncInterval later), and before Close returns. Beyond maxLazy waiting
// records it queues like Write, blocking while the writer's queue is full
// (backpressure, never loss). A record that cannot be written is
// counted and logged by the writer like any other; r is not updated with
// its chain fields.
func (w *Writer) Submit(r *Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	body, err := w.encode(r)
	if err != nil {
		return err
	}
	w.lazyMu.Lock()
	if w.lazyClosed {
		w.lazyMu.Unlock()
		return ErrClosed
	}
	if len(w.lazy) < maxLazy {
		w.lazy = append(w.lazy, &request{body: body})
		w.lazyMu.Unlock()
		return nil
	}
	w.lazyMu.Unlock()
	select {
	case w.reqs <- &request{body: body}:
		return nil
	case <-w.quit:
		return ErrClosed
	}
}

// encode renders r as the writer stores it: bodies the level drops left
// out, identifying strings keyed when an HMAC key is set.
func (w *Writer) encode(r *Record) ([]byte, error) {
	c := *r
	switch w.cfg.Level {
	case LevelMetadata:
		c.RequestBody, c.ResponseBody = "", ""
	case LevelRequest:
		c.ResponseBody = ""
	}
	c.Client = w.h.field(c.Client)
	c.UserAgent = w.h.field(c.UserAgent)
	return encodeBody(&c)
}

// finish copies the chain fields of a written record into r.
func (req *request) finish(r *Record, err error) error {
	if req.hash != "" {
		r.Prev, r.Hash = req.prev, req.hash
	}
	return err
}

// Level returns the configured audit level (metadata, request or
// request_response), so that callers fill the bodies the level keeps and
// skip the cost of those it drops.
func (w *Writer) Level() string { return w.cfg.Level }

// Err returns the last write failure while writing fails, nil once a write
// succeeded again (for readiness checks).
func (w *Writer) Err() error {
	if p := w.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// Reopen closes and reopens the log file at its path, for logrotate's
// create + postrotate (SIGUSR1 or `glmctl audit reopen`). No record is lost:
// records in flight go to the old file before it is closed.
func (w *Writer) Reopen() error {
	ch := make(chan error, 1)
	select {
	case w.reopenc <- ch:
	case <-w.done:
		return ErrClosed
	}
	return <-ch
}

// Close writes what is queued, syncs the log, writes the .head side file,
// closes the file and unregisters the metrics. Writes after Close return
// ErrClosed.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		close(w.quit)
		<-w.done
		w.wg.Wait()
		if w.reg != nil {
			w.m.unregister(w.reg)
		}
	})
	return w.closeErr
}

// loop is the writer goroutine.
func (w *Writer) loop() {
	defer w.wg.Done()
	defer close(w.done)
	tick := time.NewTicker(SyncInterval)
	defer tick.Stop()
	batch := make([]*request, 0, 64)
	for {
		select {
		case r := <-w.reqs:
			// One yield lets the writers already running queue their
			// records, so they share this batch's write(2) (and fsync)
			// instead of each waking the writer for a batch of one. On an
			// idle process nothing else is runnable and it returns at once.
			runtime.Gosched()
			batch = w.takeLazy(w.gather(append(batch[:0], r)))
			w.commitBatch(batch)
			clear(batch)
		case ch := <-w.reopenc:
			ch <- w.reopen("reopen requested")
		case <-tick.C:
			if batch = w.takeLazy(batch[:0]); len(batch) > 0 {
				w.commitBatch(batch)
				clear(batch)
			}
			w.periodic()
		case <-w.quit:
			for {
				batch = w.takeLazy(w.gather(batch[:0]))
				if len(batch) == 0 {
					break
				}
				w.commitBatch(batch)
				clear(batch)
			}
			// No Submit after this one is taken: they get ErrClosed.
			w.lazyMu.Lock()
			w.lazyClosed = true
			batch = append(batch[:0], w.lazy...)
			w.lazy = nil
			w.lazyMu.Unlock()
			if len(batch) > 0 {
				w.commitBatch(batch)
			}
			w.closeErr = w.shutdown()
			return
		}
	}
}

// maxLazy bounds the submitted records waiting for a batch; beyond it
// Submit wakes the writer like Write does.
const maxLazy = 1024

// takeLazy appends the submitted records waiting for a batch.
func (w *Writer) takeLazy(batch []*request) []*request {
	w.lazyMu.Lock()
	defer w.lazyMu.Unlock()
	batch = append(batch, w.lazy...)
	clear(w.lazy)
	w.lazy = w.lazy[:0]
	return batch
}

// gather adds queued requests to batch without blocking.
func (w *Writer) gather(batch []*request) []*request {
	n := 0
	for _, r := range batch {
		n += len(r.body)
	}
	for len(batch) < maxBatchRecords && n < maxBatchBytes {
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
			n += len(r.body)
		default:
			return batch
		}
	}
	return batch
}

// commitBatch writes a batch and answers its writers.
func (w *Writer) commitBatch(batch []*request) {
	err := w.commit(batch)
	if err != nil && w.cfg.OnError == OnErrorContinue {
		err = nil
	}
	for _, r := range batch {
		if r.done != nil {
			r.done <- err
		}
	}
}

// commit writes the pending notes and batch in one write(2). On success it
// sets each record's Prev and Hash.
func (w *Writer) commit(batch []*request) error {
	now := time.Now()
	if err := w.ensureFile(); err != nil {
		return w.failed(err, len(batch))
	}
	est := 0
	for _, r := range batch {
		est += len(r.body) + 2*len(w.last) + 40
	}
	if w.needRotate(now, est) {
		w.rotate(now)
		if w.f == nil {
			if err := w.ensureFile(); err != nil {
				return w.failed(err, len(batch))
			}
		}
	}
	w.buf = w.buf[:0]
	if w.newline {
		w.buf = append(w.buf, '\n') // end a partial line left by a failed write
	}
	prev := w.last
	for i := range w.notes {
		n := &w.notes[i]
		if n.Time.IsZero() {
			n.Time = now.UTC()
		}
		body, err := encodeBody(n)
		if err != nil {
			continue
		}
		w.buf, prev = w.h.appendLine(w.buf, body, prev)
	}
	type link struct{ prev, hash string }
	links := make([]link, len(batch))
	for i, r := range batch {
		p := prev
		w.buf, prev = w.h.appendLine(w.buf, r.body, prev)
		links[i] = link{p, prev}
	}
	n, err := w.f.Write(w.buf)
	if err != nil {
		if n > 0 {
			if terr := w.f.Truncate(w.size); terr != nil {
				// The partial line stays (verify reports it); the next
				// write starts on a new line.
				w.size += int64(n)
				w.newline = w.buf[n-1] != '\n'
				w.log.Error("audit log: could not remove a partial write", "error", terr)
			}
		}
		return w.failed(fmt.Errorf("%w: write %s: %w", ErrWrite, w.path, err), len(batch))
	}
	w.last = prev
	w.size += int64(n)
	w.dirty = true
	w.newline = false
	w.notes = w.notes[:0]
	for i, r := range batch {
		r.prev, r.hash = links[i].prev, links[i].hash
	}
	w.m.records.Add(float64(len(batch)))
	w.m.bytes.Add(float64(n))
	w.m.lastWrite.Set(float64(now.UnixNano()) / 1e9)
	if w.cfg.Fsync == FsyncAlways {
		if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
			return w.failed(fmt.Errorf("%w: fsync %s: %w", ErrWrite, w.path, err), len(batch))
		}
		w.dirty = false
		w.writeHead(false)
	}
	w.recovered()
	return nil
}

// failed counts a failure of n records and logs it (at most every 10 s).
func (w *Writer) failed(err error, n int) error {
	w.m.errors.Add(float64(n))
	w.failure.Store(&err)
	w.lost += n
	if !w.failing || time.Since(w.lastErrLog) >= errorLogEvery {
		w.log.Error("audit records not written", "error", err, "records", w.lost, "on_error", w.cfg.OnError)
		w.lastErrLog, w.lost = time.Now(), 0
	}
	w.failing = true
	if errors.Is(err, ErrWrite) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrWrite, err)
}

// recovered notes that writing works (again).
func (w *Writer) recovered() {
	if w.failing {
		w.log.Info("audit log writable again", "path", w.path, "records_not_written_since_last_log", w.lost)
		w.failing, w.lost = false, 0
		w.failure.Store(nil)
	}
}

// pathCheckEvery bounds how often the writer stats its path for a rename.
const pathCheckEvery = 25 * time.Millisecond

// ensureFile makes w.f the file at w.path: it reopens when the file was
// renamed or removed under us (logrotate create without a signal, a removed
// directory) or when an earlier open failed.
//
// Each batch costs one fstat(2) of the open file: a removed file (no links
// left) is reopened before anything is written to it, and a file shrunk
// under us is noted (copytruncate). Whether the path still names our file (a
// rename by logrotate create) is checked at most every pathCheckEvery:
// records written meanwhile land in the renamed file, which stays in the
// chain, so nothing is lost.
func (w *Writer) ensureFile() error {
	if w.f != nil {
		var st unix.Stat_t
		if err := unix.Fstat(int(w.f.Fd()), &st); err == nil && st.Nlink > 0 {
			w.noteSize(st.Size)
			now := time.Now()
			if now.Sub(w.pathChecked) < pathCheckEvery {
				return nil
			}
			w.pathChecked = now
			err := unix.Stat(w.path, &st)
			if err == nil && st.Dev == w.dev && st.Ino == w.ino {
				return nil
			}
		}
		w.log.Info("audit log file was moved or removed; reopening", "path", w.path)
		w.closeFile()
	}
	if err := os.MkdirAll(filepath.Dir(w.path), 0o700); err != nil {
		return fmt.Errorf("%w: create audit directory: %w", ErrWrite, err)
	}
	if err := w.openFile(); err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}

// checkTruncated detects a file shrunk under the writer (copytruncate) and
// queues a chain-break note, written at once.
func (w *Writer) checkTruncated() {
	var st unix.Stat_t
	if err := unix.Fstat(int(w.f.Fd()), &st); err != nil {
		return
	}
	w.noteSize(st.Size)
}

// noteSize compares the file's size on disk with what the writer wrote.
func (w *Writer) noteSize(size int64) {
	if size == w.size {
		return
	}
	if size > w.size {
		w.log.Warn("audit log grew by writes that are not glmctl's", "path", w.path, "bytes", size-w.size)
		w.size = size
		return
	}
	msg := fmt.Sprintf("audit log was truncated under glmctl (logrotate copytruncate?): %d bytes expected, %d found; "+
		"records written between the copy and the truncation are lost; rotate with create + postrotate `glmctl audit reopen`", w.size, size)
	w.log.Error("audit hash chain broken: log truncated under the writer", "path", w.path, "expected_bytes", w.size, "found_bytes", size)
	w.size = size
	w.notes = append(w.notes, Record{Stage: StageAdmin, Action: ActionChainBreak, Target: filepath.Base(w.path), Error: msg})
	if err := w.commit(nil); err != nil {
		w.log.Error("audit chain-break note not written yet", "error", err)
		return
	}
	w.writeHead(true)
}

// reopen closes the current file and opens the path again.
func (w *Writer) reopen(why string) error {
	if w.f != nil {
		w.syncData()
		w.closeFile()
	}
	if err := os.MkdirAll(filepath.Dir(w.path), 0o700); err != nil {
		return fmt.Errorf("reopen audit log: %w", err)
	}
	if err := w.openFile(); err != nil {
		return fmt.Errorf("reopen audit log: %w", err)
	}
	w.log.Info("audit log reopened", "path", w.path, "why", why)
	w.writeHead(true)
	return nil
}

// closeFile closes w.f, logging a failure.
func (w *Writer) closeFile() {
	if err := w.f.Close(); err != nil {
		w.log.Warn("close audit log", "error", err)
	}
	w.f = nil
}

// syncData fdatasyncs the log when the policy asks for syncing.
func (w *Writer) syncData() {
	if w.f == nil || !w.dirty || w.cfg.Fsync == FsyncNever {
		return
	}
	if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
		w.log.Error("fsync audit log", "error", err)
		return
	}
	w.dirty = false
}

// periodic runs every SyncInterval: sync (interval policy), write the head.
func (w *Writer) periodic() {
	if w.f == nil {
		return
	}
	w.checkTruncated()
	w.syncData()
	if w.cfg.Fsync != FsyncAlways {
		w.writeHead(false)
	}
}

// writeHead records the latest hash in the .head side file when it changed.
func (w *Writer) writeHead(force bool) {
	if w.last == "" || (!force && w.last == w.headHash) {
		return
	}
	h := head{File: filepath.Base(w.path), Offset: w.size, Hash: w.last, Time: time.Now().UTC()}
	if err := writeHead(w.path, h, false); err != nil {
		w.log.Warn("audit head not written", "error", err)
		return
	}
	w.headHash = w.last
}

// shutdown syncs, writes the head and closes the file.
func (w *Writer) shutdown() error {
	if w.f == nil {
		return nil
	}
	var err error
	if w.cfg.Fsync != FsyncNever || w.dirty {
		if serr := unix.Fdatasync(int(w.f.Fd())); serr != nil {
			err = fmt.Errorf("close audit log: fsync: %w", serr)
		}
	}
	w.writeHead(false)
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close audit log: %w", cerr)
	}
	w.f = nil
	return err
}
