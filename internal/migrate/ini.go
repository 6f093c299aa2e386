package migrate

import (
	"fmt"
	"strings"
)

// Setting is one key = value line of a supervisord section.
type Setting struct {
	Key   string
	Value string
	Line  int
	// Joined is set when the value was continued over several lines with
	// trailing backslashes (which supervisord's INI parser does not join).
	Joined bool
	// Comments are the " # …" comments cut from a command's lines.
	Comments []string
}

// Section is one [name] section of a supervisord file, settings in order.
type Section struct {
	Name     string
	Line     int
	Settings []Setting
}

// Get returns the value of key and whether it is set (the last one wins,
// as in supervisord).
func (s *Section) Get(key string) (Setting, bool) {
	for i := len(s.Settings) - 1; i >= 0; i-- {
		if s.Settings[i].Key == key {
			return s.Settings[i], true
		}
	}
	return Setting{}, false
}

// ParseINI reads a supervisord configuration: [section] headers, key=value
// (or key: value) lines, whole-line ";" and "#" comments, inline " ;"
// comments, indented continuation lines, and — unlike supervisord — lines
// continued with a trailing backslash, which the tutorial's readers meant
// as one command line. Problems carry filename:line.
func ParseINI(src []byte, filename string) ([]*Section, error) {
	lines := strings.Split(strings.ReplaceAll(string(src), "\r\n", "\n"), "\n")
	var (
		secs []*Section
		cur  *Section
		errs []string
	)
	for i := 0; i < len(lines); i++ {
		n := i + 1
		raw := lines[i]
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			end := strings.Index(line, "]")
			if end < 0 {
				errs = append(errs, fmt.Sprintf("%s:%d: section header without ]", filename, n))
				continue
			}
			cur = &Section{Name: strings.TrimSpace(line[1:end]), Line: n}
			secs = append(secs, cur)
			continue
		}
		if raw != strings.TrimLeft(raw, " \t") && cur != nil && len(cur.Settings) > 0 {
			// An indented line continues the previous value (INI style).
			s := &cur.Settings[len(cur.Settings)-1]
			s.Value = strings.TrimSpace(s.Value + " " + stripInlineComment(line))
			continue
		}
		k, v, ok := cutKey(line)
		if !ok {
			errs = append(errs, fmt.Sprintf("%s:%d: expected key=value, got %q", filename, n, line))
			continue
		}
		if cur == nil {
			errs = append(errs, fmt.Sprintf("%s:%d: %q outside any [section]", filename, n, k))
			continue
		}
		s := Setting{Key: strings.ToLower(k), Line: n}
		// Only command lines lose a trailing " # …": the tutorial's readers
		// copy its comments into them, and a shell would ignore them too.
		piece := func(text string) (string, bool) {
			text = stripInlineComment(text)
			if s.Key == "command" {
				var c string
				text, c = cutHashComment(text)
				if c != "" {
					s.Comments = append(s.Comments, c)
					if strings.HasSuffix(c, `\`) && !strings.HasSuffix(text, `\`) {
						text += ` \`
					}
				}
			}
			more := strings.HasSuffix(text, `\`)
			return strings.TrimSpace(strings.TrimSuffix(text, `\`)), more
		}
		val, more := piece(v)
		for more && i+1 < len(lines) {
			s.Joined = true
			i++
			var next string
			next, more = piece(strings.TrimSpace(lines[i]))
			val = strings.TrimSpace(val + " " + next)
		}
		if more {
			val += ` \`
		}
		s.Value = val
		cur.Settings = append(cur.Settings, s)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("parse %s:\n%s", filename, strings.Join(errs, "\n"))
	}
	return secs, nil
}

// cutKey splits "key=value" or "key: value" at the first separator.
func cutKey(line string) (key, value string, ok bool) {
	i := strings.IndexAny(line, "=:")
	if i <= 0 {
		return "", "", false
	}
	key = strings.TrimSpace(line[:i])
	if strings.ContainsAny(key, " \t") {
		return "", "", false
	}
	return key, strings.TrimSpace(line[i+1:]), true
}

// stripInlineComment removes a " ;" comment (supervisord's inline comment
// form) outside quotes.
func stripInlineComment(v string) string {
	var quote byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == ';' && i > 0 && (v[i-1] == ' ' || v[i-1] == '\t'):
			return strings.TrimSpace(v[:i])
		}
	}
	return strings.TrimSpace(v)
}

// cutHashComment cuts an unquoted "#" comment that follows whitespace.
func cutHashComment(v string) (text, comment string) {
	var quote byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || v[i-1] == ' ' || v[i-1] == '\t'):
			return strings.TrimSpace(v[:i]), strings.TrimSpace(v[i:])
		}
	}
	return strings.TrimSpace(v), ""
}

// SplitCommand splits a command line the way a POSIX shell would split
// words (single and double quotes, backslash escapes). An unquoted word
// starting with "#" ends the command: the rest is returned as comment.
func SplitCommand(s string) (args []string, comment string, err error) {
	var (
		word    strings.Builder
		inWord  bool
		quote   byte
		escaped bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			word.WriteByte(c)
			escaped = false
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				word.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0:
				i++
				word.WriteByte(s[i])
			default:
				word.WriteByte(c)
			}
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				args = append(args, word.String())
				word.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return args, strings.TrimSpace(s[i:]), nil
		case c == '\\':
			escaped, inWord = true, true
		case c == '"' || c == '\'':
			quote, inWord = c, true
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, "", fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		args = append(args, word.String())
	}
	return args, "", nil
}

// ParseEnv reads supervisord's environment value: KEY="val",KEY2=val2.
func ParseEnv(s string) (map[string]string, error) {
	out := map[string]string{}
	var parts []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
			cur.WriteByte(c)
		case c == ',':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("environment: unterminated %c quote", quote)
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("environment: %q is not KEY=value", p)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out, nil
}
