package config

import (
	"fmt"
	"math/big"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// section decodes one HCL body strictly. Every attribute and block read
// through it is recorded, so finish can report each name it does not know,
// with the closest known name as the suggested fix.
type section struct {
	c      *collector
	ctx    *hcl.EvalContext
	body   *hclsyntax.Body
	where  string // `program "vllm" health`; "" at the top level
	path   string // "program.vllm.health": where Config.At finds its attributes
	attrs  []string
	blocks []string
}

func (s *section) child(b *hclsyntax.Block, where string) *section {
	path := strings.Join(append([]string{b.Type}, b.Labels...), ".")
	if s.path != "" {
		path = s.path + "." + path
	}
	s.c.place(path, b.TypeRange)
	return &section{c: s.c, ctx: s.ctx, body: b.Body, where: where, path: path}
}

// in renders where the section is, for messages.
func (s *section) in() string {
	if s.where == "" {
		return "at the top level"
	}
	return "in " + s.where
}

// value evaluates the named attribute. ok is false when it is absent, null or
// could not be evaluated (that problem is already recorded).
func (s *section) value(name string) (attr *hclsyntax.Attribute, v cty.Value, ok bool) {
	s.attrs = append(s.attrs, name)
	attr, present := s.body.Attributes[name]
	if !present {
		return nil, cty.NilVal, false
	}
	if s.path != "" {
		s.c.place(s.path+"."+name, attr.Expr.Range())
	} else {
		s.c.place(name, attr.Expr.Range())
	}
	if !s.knownVariables(attr.Expr) {
		return attr, cty.NilVal, false
	}
	v, diags := attr.Expr.Value(s.ctx)
	if diags.HasErrors() {
		s.c.diags(diags)
		return attr, cty.NilVal, false
	}
	if v.IsNull() || !v.IsWhollyKnown() {
		return attr, cty.NilVal, false
	}
	return attr, v, true
}

// missing reports whether the named attribute is absent or null, so that a
// required one can be asked for.
func (s *section) missing(name string) bool {
	a, ok := s.body.Attributes[name]
	if !ok {
		return true
	}
	v, diags := a.Expr.Value(s.ctx)
	return !diags.HasErrors() && v.IsNull()
}

// knownVariables reports every variable expr uses that the evaluation
// context does not offer, suggesting the closest one.
func (s *section) knownVariables(expr hcl.Expression) bool {
	var names []string
	for n := range s.ctx.Variables {
		names = append(names, n)
	}
	ok := true
	for _, tr := range expr.Variables() {
		root := tr.RootName()
		if _, found := s.ctx.Variables[root]; found {
			continue
		}
		ok = false
		if c := closest(root, names); c != "" {
			s.c.at(tr.SourceRange(), "unknown variable %q: did you mean %s?", root, c)
		} else {
			s.c.at(tr.SourceRange(), "unknown variable %q: the only variable is glmctl_bin; quote text as \"%s\"", root, root)
		}
	}
	return ok
}

// describe names the kind of v for "got …" messages.
func describe(v cty.Value) string {
	t := v.Type()
	switch {
	case t == cty.String:
		return fmt.Sprintf("the string %q", v.AsString())
	case t == cty.Number:
		return "the number " + v.AsBigFloat().Text('g', -1)
	case t == cty.Bool:
		return fmt.Sprintf("%t", v.True())
	case t.IsTupleType() || t.IsListType() || t.IsSetType():
		return "a list"
	case t.IsObjectType() || t.IsMapType():
		return "a map"
	}
	return t.FriendlyName()
}

// file reads a string attribute that names a file or directory: it must be
// an absolute path. A relative one would be resolved against wherever
// glmctl happens to start (systemd starts it in /), so the same file would
// load from a shell and fail under the service.
// base is the directory the suggested absolute path starts with.
func (s *section) file(name, base string, dst *string) bool {
	if !s.str(name, dst) {
		return false
	}
	if *dst != "" && !filepath.IsAbs(*dst) {
		s.c.at(s.body.Attributes[name].Expr.Range(), "%s %q is a relative path, which would depend on the directory glmctl is started from (systemd starts it in /): write an absolute path such as %q",
			name, *dst, filepath.Join(base, *dst))
	}
	return true
}

// str reads a string attribute.
func (s *section) str(name string, dst *string) bool {
	attr, v, ok := s.value(name)
	if !ok {
		return false
	}
	if v.Type() != cty.String {
		msg := fmt.Sprintf("%s must be a string, got %s", name, describe(v))
		if v.Type() == cty.Number || v.Type() == cty.Bool {
			sv, _ := convert.Convert(v, cty.String)
			msg += fmt.Sprintf(": write %s = %q", name, sv.AsString())
		}
		s.c.at(attr.Expr.Range(), "%s", msg)
		return false
	}
	*dst = v.AsString()
	return true
}

// boolean reads a true/false attribute.
func (s *section) boolean(name string, dst *bool) {
	attr, v, ok := s.value(name)
	if !ok {
		return
	}
	if v.Type() != cty.Bool {
		msg := fmt.Sprintf("%s must be true or false, got %s", name, describe(v))
		if v.Type() == cty.String {
			if b, err := strconv.ParseBool(v.AsString()); err == nil {
				msg += fmt.Sprintf(": write %s = %t without quotes", name, b)
			} else {
				msg += fmt.Sprintf(": write %s = true or %s = false", name, name)
			}
		}
		s.c.at(attr.Expr.Range(), "%s", msg)
		return
	}
	*dst = v.True()
}

// integer reads a whole-number attribute that must be at least lo.
func (s *section) integer(name string, dst *int, lo int) {
	attr, v, ok := s.value(name)
	if !ok {
		return
	}
	n, msg := wholeNumber(name, v)
	if msg != "" {
		s.c.at(attr.Expr.Range(), "%s", msg)
		return
	}
	if n < int64(lo) {
		s.c.at(attr.Expr.Range(), "%s must be at least %d, got %d", name, lo, n)
		return
	}
	*dst = int(n)
}

// wholeNumber converts v to an int, or explains why it can't.
func wholeNumber(name string, v cty.Value) (int64, string) {
	if v.Type() != cty.Number {
		msg := fmt.Sprintf("%s must be a whole number, got %s", name, describe(v))
		if v.Type() == cty.String {
			if n, err := strconv.ParseInt(strings.TrimSpace(v.AsString()), 10, 64); err == nil {
				msg += fmt.Sprintf(": write %s = %d without quotes", name, n)
			}
		}
		return 0, msg
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact || n > 1<<31-1 || n < -(1<<31) {
		return 0, fmt.Sprintf("%s must be a whole number, got %s", name, describe(v))
	}
	return n, ""
}

// duration reads a Go duration such as "90s". Negative durations are always
// refused; zero only when allowZero is false.
func (s *section) duration(name string, dst *time.Duration, allowZero bool) {
	attr, v, ok := s.value(name)
	if !ok {
		return
	}
	var raw string
	switch v.Type() {
	case cty.String:
		raw = v.AsString()
	case cty.Number:
		raw = v.AsBigFloat().Text('g', -1)
		s.c.at(attr.Expr.Range(), "invalid duration %s for %s: write a Go duration such as \"%ss\" or \"20m\"", raw, name, raw)
		return
	default:
		s.c.at(attr.Expr.Range(), "%s must be a duration such as \"90s\" or \"20m\", got %s", name, describe(v))
		return
	}
	d, err := time.ParseDuration(strings.TrimSpace(raw))
	if err != nil {
		s.c.at(attr.Expr.Range(), "invalid duration %q for %s: write a Go duration such as \"90s\" or \"20m\"", raw, name)
		return
	}
	switch {
	case d < 0:
		s.c.at(attr.Expr.Range(), "%s must not be negative, got %q: write a duration such as \"10s\"", name, raw)
		return
	case d == 0 && !allowZero:
		s.c.at(attr.Expr.Range(), "%s must be longer than zero, got %q: write a duration such as \"10s\"", name, raw)
		return
	}
	*dst = d
}

// size reads a byte size: "100MiB", "1GB" or a plain number of bytes.
func (s *section) size(name string, dst *int64) {
	attr, v, ok := s.value(name)
	if !ok {
		return
	}
	var raw string
	switch v.Type() {
	case cty.String:
		raw = v.AsString()
	case cty.Number:
		raw = v.AsBigFloat().Text('f', -1)
	default:
		s.c.at(attr.Expr.Range(), "%s must be a size such as \"100MiB\", got %s", name, describe(v))
		return
	}
	n, err := ParseSize(raw)
	if err != nil {
		s.c.at(attr.Expr.Range(), "invalid size %q for %s: write a size such as \"100MiB\", \"4MiB\", \"1GB\" or a number of bytes", raw, name)
		return
	}
	*dst = n
}

// enum reads a string that must be one of allowed.
func (s *section) enum(name string, dst *string, allowed ...string) {
	var raw string
	if !s.str(name, &raw) {
		return
	}
	for _, a := range allowed {
		if raw == a {
			*dst = raw
			return
		}
	}
	attr := s.body.Attributes[name]
	if hint := closest(raw, allowed); hint != "" {
		s.c.at(attr.Expr.Range(), "invalid %s %q: did you mean %q? (one of %s)", name, raw, hint, quoteList(allowed))
		return
	}
	s.c.at(attr.Expr.Range(), "invalid %s %q: write one of %s", name, raw, quoteList(allowed))
}

// elemRange is the source range of element i of a list expression, or the
// whole expression's range when it is not a literal list.
func elemRange(expr hcl.Expression, i int) hcl.Range {
	if t, ok := expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
		return t.Exprs[i].Range()
	}
	return expr.Range()
}

// isList reports whether v is a list-like value.
func isList(v cty.Value) bool {
	t := v.Type()
	return t.IsTupleType() || t.IsListType() || t.IsSetType()
}

// strList reads a list of strings; ranges holds each element's position.
func (s *section) strList(name string, dst *[]string) (ranges []hcl.Range, ok bool) {
	attr, v, ok := s.value(name)
	if !ok {
		return nil, false
	}
	if !isList(v) {
		msg := fmt.Sprintf("%s must be a list of strings, got %s", name, describe(v))
		if v.Type() == cty.String {
			msg += fmt.Sprintf(": write %s = [%s]", name, quoteFields(v.AsString()))
		}
		s.c.at(attr.Expr.Range(), "%s", msg)
		return nil, false
	}
	out := []string{}
	good := true
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		rng := elemRange(attr.Expr, i)
		if ev.IsNull() || ev.Type() != cty.String {
			msg := fmt.Sprintf("%s must be a list of strings, but element %d is %s", name, i+1, describe(ev))
			if !ev.IsNull() && (ev.Type() == cty.Number || ev.Type() == cty.Bool) {
				sv, _ := convert.Convert(ev, cty.String)
				msg += fmt.Sprintf(": write %q", sv.AsString())
			}
			s.c.at(rng, "%s", msg)
			good = false
			continue
		}
		out = append(out, ev.AsString())
		ranges = append(ranges, rng)
	}
	if !good {
		return nil, false
	}
	*dst = out
	return ranges, true
}

// intList reads a list of whole numbers; ranges holds each element's position.
func (s *section) intList(name string, dst *[]int) (ranges []hcl.Range, ok bool) {
	attr, v, ok := s.value(name)
	if !ok {
		return nil, false
	}
	if !isList(v) {
		s.c.at(attr.Expr.Range(), "%s must be a list of whole numbers such as [0, 1], got %s", name, describe(v))
		return nil, false
	}
	out := []int{}
	good := true
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		rng := elemRange(attr.Expr, i)
		if ev.IsNull() {
			s.c.at(rng, "%s must be a list of whole numbers, but element %d is null", name, i+1)
			good = false
			continue
		}
		n, msg := wholeNumber(name, ev)
		if msg != "" {
			msg = fmt.Sprintf("%s must be a list of whole numbers, but element %d is %s", name, i+1, describe(ev))
			if ev.Type() == cty.String {
				if n, err := strconv.Atoi(strings.TrimSpace(ev.AsString())); err == nil {
					msg += fmt.Sprintf(": write %d without quotes", n)
				}
			}
			s.c.at(rng, "%s", msg)
			good = false
			continue
		}
		out = append(out, int(n))
		ranges = append(ranges, rng)
	}
	if !good {
		return nil, false
	}
	*dst = out
	return ranges, true
}

// strMap reads a map of strings. Numbers and booleans are taken as their
// text, so env = { N = 1800 } works.
func (s *section) strMap(name string, dst *map[string]string) {
	attr, v, ok := s.value(name)
	if !ok {
		return
	}
	t := v.Type()
	if !t.IsObjectType() && !t.IsMapType() {
		s.c.at(attr.Expr.Range(), "%s must be a map such as { NAME = \"value\" }, got %s", name, describe(v))
		return
	}
	items := map[string]hcl.Range{}
	if o, isObj := attr.Expr.(*hclsyntax.ObjectConsExpr); isObj {
		for _, it := range o.Items {
			if k, diags := it.KeyExpr.Value(s.ctx); !diags.HasErrors() && k.Type() == cty.String && k.IsKnown() && !k.IsNull() {
				items[k.AsString()] = it.ValueExpr.Range()
			}
		}
	}
	out := map[string]string{}
	good := true
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		key := k.AsString()
		rng, found := items[key]
		if !found {
			rng = attr.Expr.Range()
		}
		if ev.IsNull() {
			s.c.at(rng, "%s value for %q is null: write a string", name, key)
			good = false
			continue
		}
		if et := ev.Type(); et != cty.String && et != cty.Number && et != cty.Bool {
			s.c.at(rng, "%s value for %q must be a string, got %s", name, key, describe(ev))
			good = false
			continue
		}
		sv, _ := convert.Convert(ev, cty.String)
		out[key] = sv.AsString()
	}
	if good {
		*dst = out
	}
}

// block returns the single block of the given type, or nil. A second block of
// that type and any labels are reported.
func (s *section) block(name string) *hclsyntax.Block {
	s.blocks = append(s.blocks, name)
	var first *hclsyntax.Block
	for _, b := range s.body.Blocks {
		if b.Type != name {
			continue
		}
		if first != nil {
			s.c.at(b.TypeRange, "duplicate %s block %s: the first is at %s; merge them into one", name, s.in(), pos(s.c.filename, first.TypeRange))
			continue
		}
		first = b
		if len(b.Labels) > 0 {
			s.c.at(b.LabelRanges[0], "the %s block takes no name: write %s { … }", name, name)
		}
	}
	return first
}

// labelled returns every block of the given type that has exactly one label.
func (s *section) labelled(name string) []*hclsyntax.Block {
	s.blocks = append(s.blocks, name)
	var out []*hclsyntax.Block
	for _, b := range s.body.Blocks {
		if b.Type != name {
			continue
		}
		if len(b.Labels) != 1 {
			s.c.at(b.TypeRange, "a %s block needs exactly one name: write %s \"NAME\" { … }", name, name)
			continue
		}
		out = append(out, b)
	}
	return out
}

// finish reports every attribute and block of the body that was not read.
// owners maps an attribute name to the blocks where it belongs, for hints at
// the top level.
func (s *section) finish(owners map[string][]string) {
	var names []string
	for n := range s.body.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if contains(s.attrs, n) {
			continue
		}
		a := s.body.Attributes[n]
		switch {
		case contains(s.blocks, n):
			s.c.at(a.NameRange, "%q is a block, not an attribute: write %s { … } without \"=\"", n, n)
		case s.where == "" && len(owners[n]) > 0:
			s.c.at(a.NameRange, "attribute %q is not allowed at the top level: move it into a %s block", n, strings.Join(owners[n], " or "))
		default:
			s.c.at(a.NameRange, "unknown attribute %q %s: %s", n, s.in(), s.hint(n))
		}
	}
	for _, b := range s.body.Blocks {
		switch {
		case contains(s.blocks, b.Type):
		case contains(s.attrs, b.Type):
			s.c.at(b.TypeRange, "%q is an attribute, not a block: write %s = …", b.Type, b.Type)
		default:
			s.c.at(b.TypeRange, "unknown block %q %s: %s", b.Type, s.in(), s.hint(b.Type))
		}
	}
}

// supervisordNames maps supervisord program settings to the glmctl
// attribute that replaces them and how to write it, for people porting a
// supervisord config by hand.
func supervisordNames() map[string][2]string {
	return map[string][2]string{
		"autorestart":             {"restart", `restart = "always" (or "on-failure", "never")`},
		"startsecs":               {"start_secs", `start_secs = "10s"`},
		"startretries":            {"start_retries", "start_retries = 3"},
		"stopsignal":              {"stop_signal", `stop_signal = "SIGTERM"`},
		"stopwaitsecs":            {"stop_timeout", `stop_timeout = "30s"`},
		"environment":             {"env", `env = { NAME = "value" }`},
		"stdout_logfile":          {"log", `log { path = "…" }`},
		"stdout_logfile_maxbytes": {"log", `log { max_size = "50MB" }`},
		"stdout_logfile_backups":  {"log", "log { keep = 5 }"},
		"priority":                {"depends_on", `depends_on = ["other"] (start order follows dependencies)`},
	}
}

// hint suggests the known name closest to n, or lists the known names.
func (s *section) hint(n string) string {
	known := append(append([]string{}, s.attrs...), s.blocks...)
	if a, ok := supervisordNames()[strings.ToLower(n)]; ok && contains(known, a[0]) {
		return fmt.Sprintf("supervisord's %s is written %s here", n, a[1])
	}
	if c := closest(n, known); c != "" {
		return fmt.Sprintf("did you mean %q?", c)
	}
	if len(known) == 0 {
		return "remove it"
	}
	sorted := append([]string{}, known...)
	sort.Strings(sorted)
	return "remove it or use one of " + strings.Join(sorted, ", ")
}

// quoteFields renders "python3 -m x" as `"python3", "-m", "x"`.
func quoteFields(s string) string {
	f := strings.Fields(s)
	for i, x := range f {
		f[i] = strconv.Quote(x)
	}
	return strings.Join(f, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
