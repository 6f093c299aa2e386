package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// HMACKey checks keyed ("hmac-sha256:") hashes; without it only the links
	// of a keyed chain are checked (and a warning says so).
	HMACKey []byte
	// NoOrder checks the files in the order given instead of chain order.
	NoOrder bool
}

// Finding is one problem or warning of Verify, located by file and line
// (line 0: the file as a whole).
type Finding struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Kinds of findings.
const (
	KindEdited    = "edited"    // a record's bytes do not match its hash
	KindMissing   = "missing"   // records before this one were deleted (or reordered)
	KindInserted  = "inserted"  // this record does not follow the one before it: inserted or reordered
	KindCorrupt   = "corrupt"   // a line that is not an audit record
	KindTruncated = "truncated" // records at the end were cut off (the .head names a later one)
	KindTorn      = "torn"      // a partial last line left by a crash (warning)
	KindBreak     = "break"     // a chain break the writer documented, e.g. copytruncate (warning)
	KindStart     = "start"     // the chain starts in the middle: older files not given (warning)
	KindUnkeyed   = "unkeyed"   // keyed hashes not checked for want of the HMAC key (warning)
	KindPlain     = "plain"     // plain SHA-256 records while an HMAC key was given: anyone can rehash them (warning)
	KindNote      = "note"      // an act the writer recorded (warning)
)

// String renders "file:line: kind: message".
func (f Finding) String() string {
	if f.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Kind, f.Message)
	}
	return fmt.Sprintf("%s: %s: %s", f.File, f.Kind, f.Message)
}

// VerifyReport is the outcome of Verify. The trail is intact when Problems
// is empty; Warnings never make it broken.
type VerifyReport struct {
	Files    []string  `json:"files"`   // in the order checked
	Records  int       `json:"records"` // well-formed records read
	Problems []Finding `json:"problems"`
	Warnings []Finding `json:"warnings"`
}

// Intact reports whether no problem was found.
func (r *VerifyReport) Intact() bool { return len(r.Problems) == 0 }

// recentWindow bounds the memory of recent hashes used to tell an inserted
// or reordered record (it links to a recent one) from a deleted one.
const recentWindow = 1 << 16

// verifier walks the chain across files.
type verifier struct {
	opts      VerifyOptions
	rep       *VerifyReport
	plain     hasher
	keyedH    hasher
	last      string // hash of the previous record ("" before the first)
	started   bool   // a record was seen
	pending   *Finding
	warnedKey bool
	firstPrev string          // prev of the first record
	wanted    map[string]bool // hashes named by .head files: found?

	// With an HMAC key: the previous record was keyed; a plain record was
	// warned about.
	lastKeyed, warnedPlain bool

	// The last recentWindow records: hash -> "file:line".
	recent     map[string]string
	recentRing []string
	recentNext int
}

// remember adds a record to the recent window.
func (v *verifier) remember(hash, where string) {
	if len(v.recentRing) < recentWindow {
		v.recentRing = append(v.recentRing, hash)
	} else {
		delete(v.recent, v.recentRing[v.recentNext])
		v.recentRing[v.recentNext] = hash
		v.recentNext = (v.recentNext + 1) % recentWindow
	}
	v.recent[hash] = where
}

// Verify checks the hash chain of files (chain order unless opts.NoOrder):
// it reports every edited, deleted, inserted, reordered or corrupt record,
// a cut-off tail (against the .head side file next to a file), and warns
// about a torn final line or chain breaks the writer documented. An error
// is returned only when a file cannot be read.
func Verify(files []string, opts VerifyOptions) (*VerifyReport, error) {
	var kept []string
	for _, f := range files {
		if !skipName(f) {
			kept = append(kept, f)
		}
	}
	if !opts.NoOrder {
		kept = orderFiles(dedupeGz(kept))
	}
	v := &verifier{
		opts:   opts,
		rep:    &VerifyReport{Files: kept, Problems: []Finding{}, Warnings: []Finding{}},
		keyedH: hasher{key: opts.HMACKey},
		recent: make(map[string]string),
		wanted: make(map[string]bool),
	}
	// Heads first: a writer appending meanwhile only adds records after
	// the ones they name.
	heads := make(map[string]*head)
	for _, name := range kept {
		if strings.HasSuffix(name, ".gz") {
			continue
		}
		hd, err := readHead(name)
		if err != nil {
			v.warn(Finding{name + headSuffix, 0, KindNote, err.Error()})
		}
		if hd != nil && hd.Hash != "" {
			heads[name] = hd
			v.wanted[hd.Hash] = false
		}
	}
	lines := make(map[string]int)
	for _, name := range kept {
		n, err := v.file(name)
		if err != nil {
			return v.rep, err
		}
		lines[name] = n
	}
	v.flushPending()
	for _, name := range kept {
		hd := heads[name]
		switch {
		case hd == nil, v.wanted[hd.Hash]:
		case hd.Offset == 0 && (v.rep.Records == 0 || hd.Hash == v.firstPrev):
			// It names the record just before the files given.
		default:
			v.problem(Finding{name, lines[name], KindTruncated, fmt.Sprintf(
				"%s names record %s (written %s, ending at byte %d of %s) and none of the files has it: records at the end were cut off (or the files holding them were not given)",
				name+headSuffix, short(hd.Hash), hd.Time.Format(time.RFC3339), hd.Offset, hd.File)})
		}
	}
	return v.rep, nil
}

func (v *verifier) problem(f Finding) { v.rep.Problems = append(v.rep.Problems, f) }
func (v *verifier) warn(f Finding)    { v.rep.Warnings = append(v.rep.Warnings, f) }

// flushPending turns an unexplained link mismatch into a problem.
func (v *verifier) flushPending() {
	if v.pending != nil {
		v.problem(*v.pending)
		v.pending = nil
	}
}

// file checks one file and returns its number of lines.
func (v *verifier) file(name string) (int, error) {
	rc, err := openLog(name)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	defer rc.Close()
	lr := newLineReader(rc)
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return lr.n, fmt.Errorf("verify %s: %w", name, err)
		}
		p, perr := parseLine(line)
		if perr != nil {
			if lr.torn {
				v.warn(Finding{name, lr.n, KindTorn, fmt.Sprintf("partial last line (%d bytes, no newline): a write cut short by a crash; not a record", len(line))})
				continue
			}
			v.flushPending()
			v.problem(Finding{name, lr.n, KindCorrupt, "not an audit record (edited or damaged)"})
			continue
		}
		if lr.torn {
			v.warn(Finding{name, lr.n, KindTorn, "last line has no newline"})
		}
		v.record(name, lr.n, p)
	}
	v.flushPending() // a break is documented in the file where it happened
	return lr.n, nil
}

// record checks one well-formed record.
func (v *verifier) record(name string, n int, p *parsedLine) {
	v.rep.Records++
	here := fmt.Sprintf("%s:%d", name, n)
	// Its own hash.
	switch {
	case keyed(p.hash) && v.opts.HMACKey == nil:
		if !v.warnedKey {
			v.warnedKey = true
			v.warn(Finding{name, n, KindUnkeyed, "the chain is keyed (hmac-sha256) and no HMAC key was given: only the links are checked"})
		}
	case keyed(p.hash):
		if v.keyedH.sum(p.canonical) != p.hash {
			v.flushPending()
			v.problem(Finding{name, n, KindEdited, "record does not match its hash (edited)"})
		}
	default:
		if v.plain.sum(p.canonical) != p.hash {
			v.flushPending()
			v.problem(Finding{name, n, KindEdited, "record does not match its hash (edited)"})
		} else if v.opts.HMACKey != nil && v.lastKeyed {
			// Anyone can compute a plain hash: a keyed chain that goes on
			// plain is a record rewritten without the key, unless
			// hmac_key_file was dropped from the configuration.
			v.flushPending()
			v.problem(Finding{name, n, KindEdited, "plain SHA-256 hash after HMAC-keyed records: rewritten without the key (or hmac_key_file was removed; check those records without it)"})
		} else if v.opts.HMACKey != nil && !v.warnedPlain {
			v.warnedPlain = true
			v.warn(Finding{name, n, KindPlain, "records hashed without the HMAC key (plain SHA-256): the key does not protect them, anyone could have rewritten them"})
		}
	}
	v.lastKeyed = keyed(p.hash)
	// Its link.
	switch {
	case !v.started:
		v.firstPrev = p.rec.Prev
		if p.rec.Prev != "" {
			v.warn(Finding{name, n, KindStart, "the chain starts here with a previous hash: older files were not given or were pruned by rotation"})
		}
	case p.rec.Prev == v.last:
	default:
		v.flushPending()
		f := Finding{name, n, KindMissing, "the record before this one is missing (deleted, reordered, or the file before was cut)"}
		if where, ok := v.recent[p.rec.Prev]; ok {
			f.Kind = KindInserted
			f.Message = fmt.Sprintf("does not follow the line before it: it chains to %s (records inserted, duplicated or reordered)", where)
		}
		v.pending = &f
	}
	// Acts the writer recorded.
	if p.rec.Stage == StageAdmin {
		switch p.rec.Action {
		case ActionChainBreak:
			if v.pending != nil && v.pending.File == name {
				v.warn(Finding{v.pending.File, v.pending.Line, KindBreak, "documented chain break (" + v.pending.Kind + "): " + p.rec.Error})
				v.pending = nil
			} else {
				v.warn(Finding{name, n, KindBreak, p.rec.Error})
			}
		case ActionTailMissing:
			v.flushPending()
			v.problem(Finding{name, n, KindTruncated, "glmctl found at start that the log had been cut: " + p.rec.Error})
		case ActionTornTail:
			v.warn(Finding{name, n, KindNote, p.rec.Error})
		}
	}
	v.started = true
	v.last = p.hash
	v.remember(p.hash, here)
	if _, ok := v.wanted[p.hash]; ok {
		v.wanted[p.hash] = true
	}
}

func short(h string) string {
	h = strings.TrimPrefix(h, hmacPrefix)
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

// VerifyFile is Verify for files named by path's live file and its rotated
// siblings (Files).
func VerifyFile(path string, opts VerifyOptions) (*VerifyReport, error) {
	files, err := Files(path)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("verify: no audit log at %s: %w", path, os.ErrNotExist)
	}
	return Verify(files, opts)
}
