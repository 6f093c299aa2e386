package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Problem is one thing wrong with a config file, at the place it was found.
type Problem struct {
	Filename string
	Line     int // 1-based; 0 when the problem has no position
	Column   int // 1-based, in characters
	Message  string
}

// Error formats the problem as "FILE:LINE:COL: message".
func (p Problem) Error() string {
	if p.Line == 0 {
		if p.Filename == "" {
			return p.Message
		}
		return p.Filename + ": " + p.Message
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.Filename, p.Line, p.Column, p.Message)
}

// Problems is every problem found in a config file, in file order. Its Error
// prints one problem per line. Load and Parse return it (as an error) when the
// file is invalid; use errors.As to get at the individual problems.
type Problems []Problem

// Error prints one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// collector gathers problems while a file is decoded, and where each block
// and attribute is written (for Config.At).
type collector struct {
	filename string
	list     Problems
	places   map[string]hcl.Pos
}

// hasProblemAt reports whether a problem is already recorded at pos (a
// value already refused needs no second message).
func (c *collector) hasProblemAt(pos hcl.Pos) bool {
	for _, p := range c.list {
		if p.Line == pos.Line && p.Column == pos.Column {
			return true
		}
	}
	return false
}

// place records where the block or attribute at path (dotted, as Config.At
// takes it) is written.
func (c *collector) place(path string, rng hcl.Range) {
	if c.places == nil {
		c.places = map[string]hcl.Pos{}
	}
	c.places[path] = rng.Start
}

// at records a problem at the start of rng.
func (c *collector) at(rng hcl.Range, format string, args ...any) {
	c.list = append(c.list, Problem{
		Filename: c.filename,
		Line:     rng.Start.Line,
		Column:   rng.Start.Column,
		Message:  fmt.Sprintf(format, args...),
	})
}

// diags records HCL's own diagnostics (syntax errors, unknown variables,
// failing function calls) in the same one-line format.
func (c *collector) diags(ds hcl.Diagnostics) {
	for _, d := range ds {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := lowerFirst(d.Summary)
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		switch d.Summary {
		case "Invalid single-argument block definition", "Missing newline after argument":
			msg = "only one attribute fits on a line: put each attribute on a line of its own"
		}
		// A function's own error reads better without HCL's wrapping.
		if _, after, ok := strings.Cut(d.Detail, `" parameter: `); ok && strings.HasPrefix(d.Detail, "Invalid value for \"") {
			msg = strings.TrimSuffix(after, ".")
		}
		p := Problem{Filename: c.filename, Message: msg}
		if d.Subject != nil {
			p.Line, p.Column = d.Subject.Start.Line, d.Subject.Start.Column
		}
		c.list = append(c.list, p)
	}
}

// result returns the problems sorted by position with exact duplicates
// removed, or nil when there are none.
func (c *collector) result() error {
	if len(c.list) == 0 {
		return nil
	}
	sort.SliceStable(c.list, func(i, j int) bool {
		a, b := c.list[i], c.list[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	out := c.list[:0:0]
	for i, p := range c.list {
		if i > 0 && p == c.list[i-1] {
			continue
		}
		out = append(out, p)
	}
	return out
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// Closest returns the candidate nearest to s by edit distance (case
// ignored), or "" when none is close enough to be a plausible typo: at most
// 2 edits (3 from 8 characters on), and fewer than s has characters. It is
// the one "did you mean" of glmctl: the config's problems and the CLI's
// usage errors.
func Closest(s string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	n := len([]rune(s))
	limit := 2
	if n >= 8 {
		limit = 3
	}
	if bestDist < 0 || bestDist > limit || bestDist >= n {
		return ""
	}
	return best
}

func closest(s string, candidates []string) string { return Closest(s, candidates) }

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// quoteList renders names as `"a", "b" or "c"`.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	switch len(q) {
	case 0:
		return ""
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// pos renders a range's start as FILE:LINE:COL for cross references.
func pos(filename string, rng hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", filename, rng.Start.Line, rng.Start.Column)
}

// SettingError is an error about one setting found outside this package:
// a file the setting names, a user, the open-files limit. Config.Place
// puts it at the setting's place in the file.
type SettingError struct {
	Path string // dotted, as Config.At takes it: "guard.tls.cert"
	Err  error
}

func (e *SettingError) Error() string { return e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

// Setting wraps err as being about the setting at path (nil stays nil).
func Setting(path string, err error) error {
	if err == nil {
		return nil
	}
	return &SettingError{Path: path, Err: err}
}

// Place returns err with each SettingError in it (alone, wrapped, or
// joined) turned into Problems placed at their settings; other errors are
// returned as they are.
func (c *Config) Place(err error) error {
	if err == nil {
		return nil
	}
	var ps Problems
	var rest []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var se *SettingError
		if errors.As(e, &se) {
			ps = append(ps, c.At(se.Path, "%v", se.Err))
			return
		}
		rest = append(rest, e)
	}
	walk(err)
	if len(ps) == 0 {
		return err
	}
	if len(rest) == 0 {
		return ps
	}
	return errors.Join(append([]error{ps}, rest...)...)
}
