package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// headSuffix names the side file that keeps the latest hash outside the log.
const headSuffix = ".head"

// head is the content of <path>.head: the last record the writer knows is
// in the log (durably so under fsync "always" and "interval").
type head struct {
	File   string    `json:"file"`   // base name of the live log file
	Offset int64     `json:"offset"` // size of File right after that record
	Hash   string    `json:"hash"`
	Time   time.Time `json:"time"`
}

// readHead reads <path>.head; a missing file gives nil and no error.
func readHead(path string) (*head, error) {
	b, err := os.ReadFile(path + headSuffix)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read audit head: %w", err)
	}
	// Hash and offset are what the checks need. File and time are only
	// shown, so a damaged one must not make the whole head unreadable: a
	// verify would then skip the check for a cut tail.
	var need struct {
		Offset int64  `json:"offset"`
		Hash   string `json:"hash"`
	}
	if err := json.Unmarshal(b, &need); err != nil {
		return nil, fmt.Errorf("read audit head %s: %w", path+headSuffix, err)
	}
	h := head{Offset: need.Offset, Hash: need.Hash}
	var shown struct {
		File string `json:"file"`
	}
	if json.Unmarshal(b, &shown) == nil {
		h.File = shown.File
	}
	var at struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(b, &at) == nil {
		h.Time = at.Time
	}
	if h.Hash != "" && !validHash(h.Hash) {
		return nil, fmt.Errorf("read audit head %s: malformed hash", path+headSuffix)
	}
	return &h, nil
}

// writeHead replaces <path>.head atomically (temp file + rename), syncing
// the temp file first when sync is set.
func writeHead(path string, h head, sync bool) error {
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("write audit head: %w", err)
	}
	tmp := path + headSuffix + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write audit head: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path+headSuffix)
	}
	if err != nil {
		return fmt.Errorf("write audit head: %w", err)
	}
	return nil
}

// tail describes the end of a log file.
type tail struct {
	last      []byte // the last complete line, without newline (nil: none)
	lastStart int64  // offset of that line
	end       int64  // offset just after the last newline (= size when not torn)
	torn      int64  // bytes after the last newline
}

// readTail finds the last complete line of f, whose size is size, reading
// backwards in chunks.
func readTail(f *os.File, size int64) (tail, error) {
	const chunk = 64 << 10
	var buf []byte // bytes from pos to size
	pos := size
	for {
		lastNL := bytes.LastIndexByte(buf, '\n')
		prevNL := -1
		if lastNL >= 0 {
			prevNL = bytes.LastIndexByte(buf[:lastNL], '\n')
		}
		if pos == 0 || prevNL >= 0 {
			t := tail{end: 0, torn: size}
			if lastNL < 0 {
				return t, nil
			}
			t.end = pos + int64(lastNL) + 1
			t.torn = size - t.end
			t.lastStart = pos + int64(prevNL) + 1
			t.last = append([]byte(nil), buf[prevNL+1:lastNL]...)
			return t, nil
		}
		if size-pos > 64<<20 {
			return tail{}, fmt.Errorf("read audit log tail: last line longer than 64MiB")
		}
		n := min(int64(chunk), pos)
		pos -= n
		nb := make([]byte, n, int64(len(buf))+n)
		if _, err := f.ReadAt(nb, pos); err != nil {
			return tail{}, fmt.Errorf("read audit log tail: %w", err)
		}
		buf = append(nb, buf...)
	}
}

// openLog opens a log file for reading, decompressing .gz files.
func openLog(name string) (io.ReadCloser, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{z, f}, nil
}

// lineReader yields lines with their 1-based number; the final line may lack
// its newline (then torn is set).
type lineReader struct {
	r    *bufio.Reader
	n    int
	torn bool
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// next returns the next line without its newline, or io.EOF.
func (lr *lineReader) next() ([]byte, error) {
	line, err := lr.r.ReadBytes('\n')
	if len(line) == 0 && err != nil {
		return nil, err
	}
	lr.n++
	if err == io.EOF || (err == nil && line[len(line)-1] != '\n') {
		lr.torn = true
		return line, nil
	}
	if err != nil {
		return nil, err
	}
	return line[:len(line)-1], nil
}

// Files lists the audit log at path and its rotated siblings (built-in
// rotation's <path>.<timestamp>[.gz], logrotate's <path>.N[.gz] and
// <path>-DATE[.gz]) in chain order, oldest first. The side files (.head,
// temporary files) are left out. A missing live file is not an error.
func Files(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list audit files: %w", err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !rotatedName(base, n) {
			continue
		}
		names = append(names, filepath.Join(dir, n))
	}
	if _, err := os.Stat(path); err == nil {
		names = append(names, path)
	}
	return orderFiles(dedupeGz(names)), nil
}

// newestSibling returns the rotated sibling of path written last (by
// modification time; compression keeps it), or "".
func newestSibling(path string) string {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var best string
	var bestTime time.Time
	for _, e := range ents {
		if !e.Type().IsRegular() || !rotatedName(base, e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if t := info.ModTime(); best == "" || t.After(bestTime) || (t.Equal(bestTime) && e.Name() > filepath.Base(best)) {
			best, bestTime = filepath.Join(dir, e.Name()), t
		}
	}
	return best
}

// lastHash returns the hash of the last record of a log file, or "".
func lastHash(name string) string {
	if strings.HasSuffix(name, ".gz") {
		return scanEnds(name).lastHash
	}
	f, err := os.Open(name)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	t, err := readTail(f, st.Size())
	if err != nil || t.last == nil {
		return ""
	}
	p, err := parseLine(t.last)
	if err != nil {
		return ""
	}
	return p.hash
}

// rotatedName reports whether name is a rotated sibling of base.
func rotatedName(base, name string) bool {
	if len(name) <= len(base)+1 || !strings.HasPrefix(name, base) {
		return false
	}
	if c := name[len(base)]; c != '.' && c != '-' {
		return false
	}
	return !skipName(name)
}

// skipName reports side and temporary files that are never logs.
func skipName(name string) bool {
	return strings.HasSuffix(name, headSuffix) || strings.HasSuffix(name, ".tmp")
}

// dedupeGz drops X.gz when X is present too (a compression that was cut
// short leaves both).
func dedupeGz(names []string) []string {
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
	}
	out := names[:0]
	for _, n := range names {
		if strings.HasSuffix(n, ".gz") && have[strings.TrimSuffix(n, ".gz")] {
			continue
		}
		out = append(out, n)
	}
	return out
}

// fileInfo is what ordering needs to know about a log file.
type fileInfo struct {
	name      string
	firstPrev string
	lastHash  string
	first     time.Time // first record's time, or the file's mtime when empty
	records   bool
}

// scanEnds reads a file's first and last records.
func scanEnds(name string) fileInfo {
	fi := fileInfo{name: name}
	if st, err := os.Stat(name); err == nil {
		fi.first = st.ModTime()
	}
	rc, err := openLog(name)
	if err != nil {
		return fi
	}
	defer rc.Close()
	lr := newLineReader(rc)
	if !strings.HasSuffix(name, ".gz") {
		// Plain file: the first record, then the last one read backwards.
		for !fi.records {
			line, err := lr.next()
			if err != nil {
				return fi
			}
			if p, perr := parseLine(line); perr == nil {
				fi.records, fi.firstPrev, fi.first, fi.lastHash = true, p.rec.Prev, p.rec.Time, p.hash
			}
		}
		if h := lastHash(name); h != "" {
			fi.lastHash = h
		}
		return fi
	}
	for {
		line, err := lr.next()
		if err != nil {
			return fi
		}
		p, perr := parseLine(line)
		if perr != nil {
			continue
		}
		if !fi.records {
			fi.records = true
			fi.firstPrev = p.rec.Prev
			fi.first = p.rec.Time
		}
		fi.lastHash = p.hash
	}
}

// orderFiles sorts log files into chain order: a file follows the one whose
// last hash its first record names as prev; unlinked runs are ordered by
// their first record's time. Empty files go last.
func orderFiles(names []string) []string {
	if len(names) < 2 {
		return names
	}
	infos := make([]fileInfo, len(names))
	for i, n := range names {
		infos[i] = scanEnds(n)
	}
	sort.SliceStable(infos, func(i, j int) bool {
		if infos[i].records != infos[j].records {
			return infos[i].records
		}
		return infos[i].first.Before(infos[j].first)
	})
	byLast := make(map[string]bool)
	for _, fi := range infos {
		if fi.records {
			byLast[fi.lastHash] = true
		}
	}
	used := make([]bool, len(infos))
	var out []string
	var follow func(i int)
	follow = func(i int) {
		used[i] = true
		out = append(out, infos[i].name)
		for j := range infos {
			if !used[j] && infos[j].records && infos[j].firstPrev == infos[i].lastHash {
				follow(j)
				return
			}
		}
	}
	// Roots first: files whose predecessor is not in the set.
	for i, fi := range infos {
		if !used[i] && fi.records && (fi.firstPrev == "" || !byLast[fi.firstPrev]) {
			follow(i)
		}
	}
	for i := range infos {
		if !used[i] {
			follow(i)
		}
	}
	return out
}
