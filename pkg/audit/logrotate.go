package audit

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CheckLogrotate reads a logrotate configuration (a file, or a directory
// such as /etc/logrotate.d) and returns warnings for rules that rotate
// auditPath in a way that loses audit records: copytruncate (records
// written between the copy and the truncation are lost and the hash chain
// breaks). Unreadable files give a warning too; a missing path gives none.
func CheckLogrotate(path string, auditPath string) []string {
	st, err := os.Stat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	if !st.IsDir() {
		return checkLogrotateFile(path, auditPath)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	var warns []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			warns = append(warns, checkLogrotateFile(filepath.Join(path, e.Name()), auditPath)...)
		}
	}
	return warns
}

// checkLogrotateFile checks one logrotate file.
func checkLogrotateFile(name, auditPath string) []string {
	f, err := os.Open(name)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", name, err)}
	}
	defer f.Close()
	var (
		warns     []string
		globalCT  bool // copytruncate outside any block: the default
		inBlock   bool
		inScript  bool
		matches   bool
		blockLine int
		blockCT   *bool
		ctLine    int
	)
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if inScript {
			if line == "endscript" {
				inScript = false
				continue
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !inBlock && strings.HasSuffix(line, "{") {
			inBlock, blockLine, blockCT, ctLine = true, n, nil, 0
			matches = logrotatePatternsMatch(strings.TrimSuffix(line, "{"), auditPath)
			continue
		}
		word := strings.Fields(line)[0]
		switch {
		case word == "}":
			if inBlock && matches {
				ct := globalCT
				if blockCT != nil {
					ct = *blockCT
				}
				if ct {
					at := blockLine
					if ctLine > 0 {
						at = ctLine
					}
					warns = append(warns, fmt.Sprintf("%s:%d: copytruncate rotates the audit log %s: records written between the copy and the truncation are lost and the hash chain breaks; use built-in rotation (audit.rotate) or `create 0600` with `postrotate glmctl audit reopen`", name, at, auditPath))
				}
			}
			inBlock = false
		case word == "postrotate" || word == "prerotate" || word == "firstaction" || word == "lastaction" || word == "preremove":
			inScript = true
		case word == "copytruncate":
			if inBlock {
				t := true
				blockCT, ctLine = &t, n
			} else {
				globalCT = true
			}
		case word == "nocopytruncate":
			if inBlock {
				f := false
				blockCT = &f
			} else {
				globalCT = false
			}
		}
	}
	if err := sc.Err(); err != nil {
		warns = append(warns, fmt.Sprintf("%s: %v", name, err))
	}
	return warns
}

// logrotatePatternsMatch reports whether one of the (possibly quoted, glob)
// patterns names auditPath.
func logrotatePatternsMatch(patterns, auditPath string) bool {
	for _, p := range strings.Fields(patterns) {
		p = strings.Trim(p, `"'`)
		if p == auditPath {
			return true
		}
		if ok, err := filepath.Match(p, auditPath); err == nil && ok {
			return true
		}
	}
	return false
}
