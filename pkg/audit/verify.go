package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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
	KindNote      = "note"      // an act the writer recorded (warning)
)

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

// verifier walks the chain across files.
type verifier struct {
	opts       VerifyOptions
	rep        *VerifyReport
	plain      hasher
	keyedH     hasher
	last       string         // hash of the previous record ("" before the first)
	started    bool           // a record was seen
	seen       map[string]int // hash -> index of the record in the chain
	idx        int
	lineOf     []string // "file:line" by chain index, for messages
	pending    *Finding // a link mismatch not (yet) explained by a break note
	warnedKey  bool
	fileHashes map[string][]endHash // per file: offsets after each record
}

type endHash struct {
	end  int64
	hash string
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
		opts:       opts,
		rep:        &VerifyReport{Files: kept, Problems: []Finding{}, Warnings: []Finding{}},
		keyedH:     hasher{key: opts.HMACKey},
		seen:       make(map[string]int),
		fileHashes: make(map[string][]endHash),
	}
	for _, name := range kept {
		if err := v.file(name); err != nil {
			return v.rep, err
		}
	}
	v.flushPending()
	for _, name := range kept {
		v.checkHead(name)
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

// file checks one file.
func (v *verifier) file(name string) error {
	rc, err := openLog(name)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer rc.Close()
	lr := newLineReader(rc)
	var off int64
	var ends []endHash
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("verify %s: %w", name, err)
		}
		off += int64(len(line))
		if !lr.torn {
			off++
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
		ends = append(ends, endHash{off, p.hash})
	}
	v.fileHashes[name] = ends
	v.flushPending() // a break is documented in the file where it happened
	return nil
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
		}
	}
	// Its link.
	switch {
	case !v.started:
		if p.rec.Prev != "" {
			v.warn(Finding{name, n, KindStart, "the chain starts here with a previous hash: older files were not given or were pruned by rotation"})
		}
	case p.rec.Prev == v.last:
	default:
		v.flushPending()
		f := Finding{name, n, KindMissing, "the record before this one is missing (deleted, reordered, or the file before was cut)"}
		if i, ok := v.seen[p.rec.Prev]; ok {
			f.Kind = KindInserted
			f.Message = fmt.Sprintf("does not follow the line before it: it chains to %s (records inserted, duplicated or reordered)", v.lineOf[i])
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
	v.seen[p.hash] = v.idx
	v.lineOf = append(v.lineOf, here)
	v.idx++
}

// checkHead compares a file's records with its .head side file, if any.
func (v *verifier) checkHead(name string) {
	if strings.HasSuffix(name, ".gz") {
		return
	}
	hd, err := readHead(name)
	if err != nil {
		v.warn(Finding{name + headSuffix, 0, KindNote, err.Error()})
		return
	}
	if hd == nil || hd.Hash == "" {
		return
	}
	ends := v.fileHashes[name]
	if hd.Offset == 0 {
		// The head's record precedes this file: it must be the link into it.
		_, ok := v.seen[hd.Hash]
		switch {
		case ok:
		case !ok && len(ends) > 0 && v.firstPrev(name) == hd.Hash:
		case !ok && len(ends) == 0 && v.rep.Records == 0:
		default:
			v.problem(Finding{name, 0, KindTruncated, fmt.Sprintf("%s names hash %s as the last record before this file, and it is not there: records were cut off", name+headSuffix, short(hd.Hash))})
		}
		return
	}
	for i, e := range ends {
		if e.end == hd.Offset {
			if e.hash != hd.Hash {
				v.problem(Finding{name, i + 1, KindTruncated, fmt.Sprintf("%s names hash %s at this record's end; found %s: the log was cut and rewritten", name+headSuffix, short(hd.Hash), short(e.hash))})
			}
			return
		}
	}
	lastLine := len(ends)
	v.problem(Finding{name, lastLine, KindTruncated, fmt.Sprintf("%s names a record (hash %s) ending at byte %d, but the file has no record ending there: records at the end were cut off", name+headSuffix, short(hd.Hash), hd.Offset)})
}

// firstPrev returns the prev of the first record of a file (re-read).
func (v *verifier) firstPrev(name string) string {
	return scanEnds(name).firstPrev
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
