package migrate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// hclWriter builds HCL text with two-space indentation and
// "# glmctl import: …" comments above the lines they explain. Every value
// is rendered by hclwrite, the writer of the HCL package that reads the
// config back, so whatever the supervisord file holds comes out as an HCL
// literal that parses to the same string; the layout (one flag and its
// value per line of a command, comments above what they explain) is this
// writer's.
type hclWriter struct {
	b      strings.Builder
	indent int
}

func (w *hclWriter) pad() { w.b.WriteString(strings.Repeat("  ", w.indent)) }

// note writes one "# glmctl import: …" comment line. Text from the
// supervisord file can hold anything: characters that would end or break
// a comment line (newlines, other control characters, invalid UTF-8) are
// written as escapes.
func (w *hclWriter) note(format string, args ...any) {
	w.pad()
	w.b.WriteString("# glmctl import: " + commentSafe(fmt.Sprintf(format, args...)) + "\n")
}

// commentSafe returns s with every rune that is not printable, and every
// byte that is not UTF-8, escaped as in Go source.
func commentSafe(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case !unicode.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// line writes a raw line at the current indentation.
func (w *hclWriter) line(format string, args ...any) {
	w.pad()
	w.b.WriteString(fmt.Sprintf(format, args...) + "\n")
}

func (w *hclWriter) attr(name, value string) { w.line("%s = %s", name, value) }

func (w *hclWriter) open(header string) {
	w.line("%s {", header)
	w.indent++
}

func (w *hclWriter) close() {
	w.indent--
	w.line("}")
}

func (w *hclWriter) blank() { w.b.WriteString("\n") }

// hstr renders s as an HCL string literal: quoted and escaped by hclwrite,
// template sequences ("${", "%{") doubled so they stay literal text.
func hstr(s string) string {
	return string(hclwrite.TokensForValue(cty.StringVal(s)).Bytes())
}

func hints(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func hlist(xs []string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = hstr(x)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// hmap renders a map with sorted keys on one line.
func hmap(m map[string]string) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = hstr(k) + " = " + hstr(m[k])
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// command writes a command attribute one flag (with its value) per line.
func (w *hclWriter) command(args []string) {
	if len(args) <= 3 {
		w.attr("command", hlist(args))
		return
	}
	w.line("command = [")
	w.indent++
	i := 0
	// The program and its leading non-flag words on the first line.
	for i < len(args) && (i == 0 || !strings.HasPrefix(args[i], "-") || args[i] == "-m") {
		if args[i] == "-m" && i+1 < len(args) {
			i += 2
			continue
		}
		i++
	}
	w.line("%s,", strings.Join(quoteAll(args[:i]), ", "))
	for i < len(args) {
		j := i + 1
		for j < len(args) && !strings.HasPrefix(args[j], "-") {
			j++
		}
		w.line("%s,", strings.Join(quoteAll(args[i:j]), ", "))
		i = j
	}
	w.indent--
	w.line("]")
}

func quoteAll(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = hstr(x)
	}
	return out
}
