package migrate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// hclWriter builds HCL text with two-space indentation and
// "# glmctl import: …" comments above the lines they explain.
type hclWriter struct {
	b      strings.Builder
	indent int
}

func (w *hclWriter) pad() { w.b.WriteString(strings.Repeat("  ", w.indent)) }

// note writes one "# glmctl import: …" comment line.
func (w *hclWriter) note(format string, args ...any) {
	w.pad()
	w.b.WriteString("# glmctl import: " + fmt.Sprintf(format, args...) + "\n")
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

// hstr quotes s as an HCL string literal (template sequences escaped).
func hstr(s string) string {
	q := strconv.Quote(s)
	q = strings.ReplaceAll(q, "${", "$${")
	return strings.ReplaceAll(q, "%{", "%%{")
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
