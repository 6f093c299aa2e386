package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// Filter selects records for Tail and Follow; zero fields match all.
type Filter struct {
	Key    string // key name
	Status int    // HTTP status
}

// Match reports whether r passes the filter.
func (f Filter) Match(r *Record) bool {
	return (f.Key == "" || r.Key == f.Key) && (f.Status == 0 || r.Status == f.Status)
}

// Tail returns the last n records of files (oldest file first) that pass
// the filter, reading from the newest file backwards only as far as needed.
// Lines that are not records are skipped.
func Tail(files []string, n int, f Filter) ([]Record, error) {
	var out []Record
	for i := len(files) - 1; i >= 0 && len(out) < n; i-- {
		var recs []Record
		err := eachRecord(files[i], func(r *Record) {
			if f.Match(r) {
				recs = append(recs, *r)
			}
		})
		if err != nil {
			return nil, err
		}
		out = append(recs, out...)
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// eachRecord calls fn for every well-formed record of a file.
func eachRecord(name string, fn func(*Record)) error {
	rc, err := openLog(name)
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	defer rc.Close()
	lr := newLineReader(rc)
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read audit log %s: %w", name, err)
		}
		var r Record
		if json.Unmarshal(line, &r) == nil && r.Stage != "" {
			fn(&r)
		}
	}
}

// FollowPoll is how often Follow looks for new records.
const FollowPoll = 200 * time.Millisecond

// Follow calls fn for each record appended to the file at path from its
// current end on, until ctx ends (returning nil). It follows the path
// across rotation (the file renamed and a new one created) and truncation.
func Follow(ctx context.Context, path string, f Filter, fn func(*Record)) error {
	var (
		file    *os.File
		ino     uint64
		partial []byte
	)
	open := func(fromEnd bool) {
		fl, err := os.Open(path)
		if err != nil {
			return
		}
		var st syscall.Stat_t
		if syscall.Fstat(int(fl.Fd()), &st) != nil {
			fl.Close()
			return
		}
		if fromEnd {
			fl.Seek(0, io.SeekEnd)
		}
		file, ino, partial = fl, st.Ino, nil
	}
	open(true)
	defer func() {
		if file != nil {
			file.Close()
		}
	}()
	buf := make([]byte, 64<<10)
	drain := func() {
		for file != nil {
			n, err := file.Read(buf)
			if n > 0 {
				partial = append(partial, buf[:n]...)
				for {
					i := bytes.IndexByte(partial, '\n')
					if i < 0 {
						break
					}
					var r Record
					if json.Unmarshal(partial[:i], &r) == nil && r.Stage != "" && f.Match(&r) {
						fn(&r)
					}
					partial = partial[i+1:]
				}
			}
			if err != nil || n == 0 {
				return
			}
		}
	}
	t := time.NewTicker(FollowPoll)
	defer t.Stop()
	for {
		drain()
		var st syscall.Stat_t
		switch err := syscall.Stat(path, &st); {
		case file == nil && err == nil:
			open(false)
			continue
		case file != nil && err == nil && st.Ino != ino:
			drain() // what was written to the old file before the switch
			file.Close()
			file = nil
			open(false)
			continue
		case file != nil && err == nil:
			if off, _ := file.Seek(0, io.SeekCurrent); st.Size < off {
				file.Seek(0, io.SeekStart) // truncated (copytruncate)
				partial = nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// FormatRecord renders a record on one line for people.
func FormatRecord(r *Record) string {
	var b strings.Builder
	b.WriteString(r.Time.Local().Format("2006-01-02 15:04:05.000"))
	fmt.Fprintf(&b, " %-9s", r.Stage)
	add := func(s string) {
		if s != "" {
			b.WriteByte(' ')
			b.WriteString(s)
		}
	}
	if r.Stage == StageAdmin {
		add(r.Action)
		add(r.Target)
		add(r.Key)
		if r.Error != "" {
			add("— " + r.Error)
		}
		return b.String()
	}
	add(r.RequestID)
	key := r.Key
	if key == "" {
		key = "-"
	}
	add(key)
	add(r.Client)
	add(r.Method)
	add(r.Path)
	add(r.Model)
	if r.Stream {
		add("stream")
	}
	if r.Status != 0 {
		add(fmt.Sprint(r.Status))
	}
	if r.LatencyMS > 0 {
		add(fmt.Sprintf("%.1fms", r.LatencyMS))
	}
	if r.TTFTMS > 0 {
		add(fmt.Sprintf("ttft=%.1fms", r.TTFTMS))
	}
	if r.PromptTokens > 0 || r.CompletionTokens > 0 {
		add(fmt.Sprintf("tokens=%d/%d", r.PromptTokens, r.CompletionTokens))
	}
	if r.BytesIn > 0 || r.BytesOut > 0 {
		add(fmt.Sprintf("bytes=%d/%d", r.BytesIn, r.BytesOut))
	}
	if r.Limit != "" {
		add("limit=" + r.Limit)
	}
	for _, h := range r.Policy {
		add("policy=" + h.Rule + ":" + h.Action)
	}
	if r.Error != "" {
		add(fmt.Sprintf("error=%q", r.Error))
	}
	return b.String()
}
