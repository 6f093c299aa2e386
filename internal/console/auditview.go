package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/glmctl/glmctl/pkg/audit"
)

// auditLine is one record as read back from the log.
type auditLine = audit.Record

// recentScan is how much of the audit log's end the audit page reads: the
// page shows recent records, not a search of the whole trail (`glmctl audit
// tail` and `stats` read everything).
const recentScan = 16 << 20

// scanBackwards calls fn for the records of the audit log at path and its
// rotated, uncompressed predecessors, newest first, reading at most budget
// bytes from the end; fn returns false to stop. It reports whether it read
// everything there was.
func scanBackwards(path string, budget int64, fn func(*auditLine) bool) (bool, error) {
	files, err := audit.Files(path)
	if err != nil {
		return false, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		name := files[i]
		if strings.HasSuffix(name, ".gz") {
			return false, nil // compressed files cannot be read backwards
		}
		used, more, err := scanFileBackwards(name, budget, fn)
		if err != nil {
			return false, err
		}
		if !more {
			return false, nil
		}
		budget -= used
		if budget <= 0 {
			return i == 0, nil
		}
	}
	return true, nil
}

// scanFileBackwards reads one file from its end in chunks. more: fn wants
// more and the file was read whole.
func scanFileBackwards(name string, budget int64, fn func(*auditLine) bool) (used int64, more bool, err error) {
	f, err := os.Open(name)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, true, nil
		}
		return 0, false, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("read audit log: %w", err)
	}
	const chunk = 256 << 10
	pos := st.Size()
	var carry []byte // the start of a line whose beginning is not read yet
	for pos > 0 {
		if used >= budget {
			return used, false, nil
		}
		n := min(int64(chunk), pos)
		pos -= n
		buf := make([]byte, n, n+int64(len(carry)))
		if _, err := f.ReadAt(buf, pos); err != nil && err != io.EOF {
			return used, false, fmt.Errorf("read audit log: %w", err)
		}
		used += n
		buf = append(buf, carry...)
		// Every line after the first newline is complete.
		first := bytes.IndexByte(buf, '\n')
		if first < 0 {
			carry = buf
			continue
		}
		rest := buf[first+1:]
		carry = buf[:first]
		if !eachLineBackwards(rest, fn) {
			return used, false, nil
		}
	}
	if len(carry) > 0 && !eachLineBackwards(carry, fn) {
		return used, false, nil
	}
	return used, true, nil
}

// eachLineBackwards parses the lines of b, last first.
func eachLineBackwards(b []byte, fn func(*auditLine) bool) bool {
	for len(b) > 0 {
		i := bytes.LastIndexByte(b[:len(b)-1], '\n')
		line := bytes.TrimSpace(b[i+1:])
		b = b[:i+1]
		if i < 0 {
			b = nil
		}
		if len(line) == 0 {
			continue
		}
		var r auditLine
		if json.Unmarshal(line, &r) != nil || r.Stage == "" {
			continue // a torn or foreign line
		}
		if !fn(&r) {
			return false
		}
	}
	return true
}

// auditFilter selects records on the audit page.
type auditFilter struct {
	Key    string
	Status string // "429", "4xx", "5xx" or ""
	Path   string // substring of the path
	Stage  string // "", "all", "received", "completed", "admin"
	N      int
}

func (f auditFilter) match(r *auditLine) bool {
	switch f.Stage {
	case "":
		if r.Stage == audit.StageReceived {
			return false // its completed record says more
		}
	case "all":
	default:
		if r.Stage != f.Stage {
			return false
		}
	}
	if f.Key != "" && r.Key != f.Key {
		return false
	}
	if f.Path != "" && !strings.Contains(r.Path, f.Path) {
		return false
	}
	switch st := f.Status; {
	case st == "":
	case len(st) == 3 && strings.HasSuffix(st, "xx"):
		if r.Status/100 != int(st[0]-'0') {
			return false
		}
	default:
		if strconv.Itoa(r.Status) != st {
			return false
		}
	}
	return true
}

// auditView is the audit page.
type auditView struct {
	Path     string
	Filter   auditFilter
	Records  []auditRow
	Complete bool // the scan reached the start of the trail
	Scanned  string
	Err      string
	Verify   verifyView
}

type auditRow struct {
	Time                                time.Time
	Stage, Key, Client, Method, Path    string
	Model, Error, Limit, Action, Target string
	Status                              int
	StatusClass                         string
	Latency                             string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess *session) {
	v := s.newView(r, sess, "Audit")
	q := r.URL.Query()
	f := auditFilter{Key: strings.TrimSpace(q.Get("key")), Status: strings.TrimSpace(q.Get("status")),
		Path: strings.TrimSpace(q.Get("path")), Stage: q.Get("stage"), N: 100}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n > 0 {
		f.N = min(n, 1000)
	}
	av := &auditView{Path: s.opts.AuditPath, Filter: f, Scanned: fmt.Sprintf("%d MiB", recentScan>>20)}
	av.Verify = s.verify.view()
	if s.opts.AuditPath == "" {
		av.Err = "No audit block in the configuration: there is no trail to show."
	} else {
		complete, err := scanBackwards(s.opts.AuditPath, recentScan, func(rec *auditLine) bool {
			if f.match(rec) {
				av.Records = append(av.Records, auditRowOf(rec))
			}
			return len(av.Records) < f.N
		})
		av.Complete = complete
		if err != nil {
			av.Err = err.Error()
		}
	}
	v.Audit = av
	s.render(w, r, http.StatusOK, "audit", v)
}

func auditRowOf(r *auditLine) auditRow {
	row := auditRow{Time: r.Time, Stage: r.Stage, Key: r.Key, Client: r.Client, Method: r.Method, Path: r.Path,
		Model: r.Model, Error: r.Error, Limit: r.Limit, Action: r.Action, Target: r.Target, Status: r.Status}
	switch {
	case r.Status >= 500:
		row.StatusClass = "bad"
	case r.Status >= 400:
		row.StatusClass = "warn"
	case r.Status > 0:
		row.StatusClass = "ok"
	}
	if r.Stage == audit.StageAdmin && r.Error != "" {
		row.StatusClass = "bad"
	}
	if r.LatencyMS > 0 {
		row.Latency = fmtSeconds(r.LatencyMS / 1000)
	}
	return row
}

// verifier runs `audit verify` over the trail on demand and keeps the last
// result.
type verifier struct {
	mu      sync.Mutex
	running bool
	started time.Time
	by      string
	at      time.Time // when the last run ended
	took    time.Duration
	report  *audit.VerifyReport
	err     error
}

// verifyView is the last verify result for the page.
type verifyView struct {
	Running      bool
	Started, At  time.Time
	By           string
	Took         string
	Ran          bool
	Intact       bool
	Records      int
	Files        int
	Problems     []string
	Warnings     []string
	MoreProblems int
	Err          string
}

func (vf *verifier) view() verifyView {
	vf.mu.Lock()
	defer vf.mu.Unlock()
	v := verifyView{Running: vf.running, Started: vf.started, By: vf.by, At: vf.at}
	if vf.at.IsZero() {
		return v
	}
	v.Ran, v.Took = true, vf.took.Round(time.Millisecond).String()
	if vf.err != nil {
		v.Err = vf.err.Error()
		return v
	}
	rep := vf.report
	v.Intact, v.Records, v.Files = rep.Intact(), rep.Records, len(rep.Files)
	const show = 20
	for i, p := range rep.Problems {
		if i == show {
			v.MoreProblems = len(rep.Problems) - show
			break
		}
		v.Problems = append(v.Problems, p.String())
	}
	for i, w := range rep.Warnings {
		if i == show {
			break
		}
		v.Warnings = append(v.Warnings, w.String())
	}
	return v
}

// start runs a verify in the background unless one runs; false: one runs.
func (vf *verifier) start(path string, key []byte, by string, now func() time.Time) bool {
	vf.mu.Lock()
	if vf.running {
		vf.mu.Unlock()
		return false
	}
	vf.running, vf.started, vf.by = true, now(), by
	vf.mu.Unlock()
	go func() {
		t0 := time.Now()
		var rep *audit.VerifyReport
		files, err := audit.Files(path)
		if err == nil {
			rep, err = audit.Verify(files, audit.VerifyOptions{HMACKey: key})
		}
		vf.mu.Lock()
		defer vf.mu.Unlock()
		vf.running, vf.at, vf.took, vf.report, vf.err = false, now(), time.Since(t0), rep, err
	}()
	return true
}

// idle reports whether no verify runs.
func (vf *verifier) idle() bool {
	vf.mu.Lock()
	defer vf.mu.Unlock()
	return !vf.running
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.opts.AuditPath == "" {
		s.done(w, r, sess, "/audit", "Nothing to verify", fmt.Errorf("no audit block in the configuration"))
		return
	}
	if !s.confirmed(w, r, sess, confirmView{Question: "Verify the audit trail?",
		Detail: "Every file of the trail is read and its hash chain checked, in the background; on a large trail this takes a while.",
		Button: "Verify", Back: "/audit"}) {
		return
	}
	started := s.verify.start(s.opts.AuditPath, s.opts.AuditHMACKey, sess.name, s.now)
	s.record(r, sess, "console.audit_verify", s.opts.AuditPath, nil)
	msg := "Verify started; the result appears below when it is done"
	if !started {
		msg = "A verify is already running"
	}
	s.done(w, r, sess, "/audit", msg, nil)
}
