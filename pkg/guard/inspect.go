package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The guard reads the fields that decide routing, model and reservation with
// the model server's semantics, not encoding/json's. vLLM (Python, pydantic)
// matches JSON names byte for byte and keeps the last of duplicate names;
// encoding/json folds case and some Unicode (ſ → s, K → k) and so could read
// a field vLLM ignores. Here a top-level name is decoded exactly; a decided
// field given twice, or a name that only folds to one, is refused (400), so
// the guard and the server can never read different values.

// Field names the guard decides on.
const (
	fieldModel               = "model"
	fieldStream              = "stream"
	fieldStreamOptions       = "stream_options"
	fieldMaxTokens           = "max_tokens"
	fieldMaxCompletionTokens = "max_completion_tokens"
	fieldN                   = "n"
	fieldBestOf              = "best_of"
	fieldMessages            = "messages"
	fieldPrompt              = "prompt"
	fieldInput               = "input"
)

var decidedFields = [...]string{fieldModel, fieldStream, fieldStreamOptions, fieldMaxTokens,
	fieldMaxCompletionTokens, fieldN, fieldBestOf, fieldMessages, fieldPrompt, fieldInput}

// maxChoices bounds n and best_of (OpenAI's own cap on n is 128).
const maxChoices = 128

// completionDefaultMaxTokens is vLLM's (and OpenAI's) max_tokens for
// /v1/completions when the field is absent.
const completionDefaultMaxTokens = 16

// inspectLimits are the settings inspection needs.
type inspectLimits struct {
	defaultMaxTokens int64 // reserved when a chat request names no max_tokens
	maxModelLen      int64 // cap on max_tokens values
}

// request is what the guard reads from a JSON request body.
type request struct {
	model        string
	stream       bool
	includeUsage bool
	// hideUsage: the client did not ask for the stream's usage chunk; the
	// guard asks upstream for it and removes it on the way back.
	hideUsage bool
	reserve   int64
	// promptTokens is the prompt estimate; maxTokens the completion tokens
	// reserved per choice, choices their number (the policy reads them).
	promptTokens, maxTokens, choices int64
	// body is the body to forward (the client's, or with include_usage set).
	body []byte
}

// span is a value's place in the body.
type span struct{ start, end int }

func (s span) ok() bool { return s.end > s.start }

// badRequest is a 400 with its message.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func refused(format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...)}
}

// inspect reads a JSON request body for route rt: the decided fields with
// exact names, the token reservation with saturating arithmetic and range
// checks, and, for streams whose client did not ask for usage, a body that
// asks upstream for it. An error is a *badRequest for a 400.
func inspect(body []byte, rt *route, lim inspectLimits) (request, error) {
	req := request{body: body}
	if !json.Valid(body) {
		var v json.RawMessage
		return req, refused("The request body is not valid JSON: %s", jsonProblem(json.Unmarshal(body, &v)))
	}
	var fields [len(decidedFields)]span
	err := eachMember(body, func(name []byte, val span) error {
		i := decidedIndex(name)
		if i < 0 {
			if f := foldsTo(name); f != "" {
				return refused("The request body names %q, which is not %q: field names are matched exactly (as the model server matches them). Write %q.", name, f, f)
			}
			return nil
		}
		if fields[i].ok() {
			return refused("The request body gives %q more than once.", decidedFields[i])
		}
		fields[i] = val
		return nil
	})
	if err != nil {
		return req, err
	}
	val := func(f string) []byte {
		s := fields[decidedIndex([]byte(f))]
		if !s.ok() {
			return nil
		}
		return body[s.start:s.end]
	}
	if req.model, err = stringField(fieldModel, val(fieldModel)); err != nil {
		return req, err
	}
	if rt.reserve == reserveNothing {
		return req, nil
	}
	prompt := int64(len(val(fieldMessages)) + len(val(fieldPrompt)) + len(val(fieldInput)))
	req.reserve = estimateTokens(prompt)
	req.promptTokens = req.reserve
	if rt.reserve == reservePrompt {
		return req, nil
	}

	maxTokens, err := completionBudget(rt, val, lim)
	if err != nil {
		return req, err
	}
	choices := int64(1)
	for _, f := range []string{fieldN, fieldBestOf} {
		c, present, err := intField(f, val(f), 1, maxChoices)
		if err != nil {
			return req, err
		}
		if present && c > choices {
			choices = c
		}
	}
	req.reserve = satAdd(req.reserve, satMul(maxTokens, choices))
	req.maxTokens, req.choices = maxTokens, choices

	if !rt.streams {
		return req, nil
	}
	if req.stream, err = boolField(fieldStream, val(fieldStream)); err != nil || !req.stream {
		return req, err
	}
	opts := fields[decidedIndex([]byte(fieldStreamOptions))]
	if req.includeUsage, err = includeUsage(body, opts); err != nil {
		return req, err
	}
	if !req.includeUsage {
		req.hideUsage = true
		req.body = withIncludeUsage(body, opts)
	}
	return req, nil
}

// completionBudget is the max_tokens the model server will use for rt:
// chat uses max_completion_tokens or max_tokens (Python's `or`: a 0 or
// null max_completion_tokens falls through to max_tokens); completions
// have max_tokens only (absent: 16, null: the server's default, for which
// the guard reserves guard.default_max_tokens).
func completionBudget(rt *route, val func(string) []byte, lim inspectLimits) (int64, error) {
	mt, mtSet, err := intField(fieldMaxTokens, val(fieldMaxTokens), 0, lim.maxModelLen)
	if err != nil {
		return 0, err
	}
	if rt.reserve == reserveChat {
		mct, mctSet, err := intField(fieldMaxCompletionTokens, val(fieldMaxCompletionTokens), 0, lim.maxModelLen)
		switch {
		case err != nil:
			return 0, err
		case mctSet && mct != 0:
			return mct, nil
		case mtSet:
			return mt, nil
		}
		return lim.defaultMaxTokens, nil
	}
	switch raw := val(fieldMaxTokens); {
	case mtSet:
		return mt, nil
	case raw == nil:
		return min(completionDefaultMaxTokens, lim.maxModelLen), nil
	}
	return lim.defaultMaxTokens, nil // explicit null
}

// estimateTokens is the prompt estimate: bytes of the prompt's JSON divided
// by 4, rounded up (about right for English, generous for CJK text).
func estimateTokens(n int64) int64 { return (n + 3) / 4 }

func decidedIndex(name []byte) int {
	for i, f := range decidedFields {
		if f == string(name) {
			return i
		}
	}
	return -1
}

// foldsTo returns the decided field that name equals under Unicode case
// folding without being it, or "".
func foldsTo(name []byte) string {
	if len(name) > 2*len(fieldMaxCompletionTokens) || !utf8.Valid(name) {
		return ""
	}
	for _, f := range decidedFields {
		if string(name) != f && strings.EqualFold(string(name), f) {
			return f
		}
	}
	return ""
}

// stringField reads a string or null value.
func stringField(name string, raw []byte) (string, error) {
	if raw == nil || string(raw) == "null" {
		return "", nil
	}
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), nil // no escapes: the bytes are the string
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", refused("%q must be a string.", name)
	}
	return s, nil
}

// boolField reads true, false or null.
func boolField(name string, raw []byte) (bool, error) {
	switch string(raw) {
	case "", "null", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, refused("%q must be true or false.", name)
}

// intField reads a whole number in [lo, hi] (or null or absent: present
// false). Only plain JSON integers are read: 1e3, 10.0 or "10" are refused,
// since the guard must read exactly the number the server will use.
func intField(name string, raw []byte, lo, hi int64) (int64, bool, error) {
	if raw == nil || string(raw) == "null" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		if bytes.ContainsAny(raw, ".eE") || raw[0] == '"' || errors.Is(err, strconv.ErrSyntax) {
			return 0, false, refused("%q must be a whole number (write e.g. %d).", name, max(lo, 1))
		}
		return 0, false, refused("%q must be between %d and %d.", name, lo, hi)
	}
	if n < lo || n > hi {
		return 0, false, refused("%q must be between %d and %d, got %d.", name, lo, hi, n)
	}
	return n, true, nil
}

// includeUsage reads stream_options.include_usage (exact names again).
func includeUsage(body []byte, opts span) (bool, error) {
	if !opts.ok() {
		return false, nil
	}
	raw := body[opts.start:opts.end]
	if string(raw) == "null" {
		return false, nil
	}
	if raw[0] != '{' {
		return false, refused("%q must be an object.", fieldStreamOptions)
	}
	var include bool
	seen := false
	err := eachMember(raw, func(name []byte, v span) error {
		switch {
		case string(name) == "include_usage":
			if seen {
				return refused("stream_options gives \"include_usage\" more than once.")
			}
			seen = true
			var err error
			include, err = boolField("stream_options.include_usage", raw[v.start:v.end])
			return err
		case strings.EqualFold(string(name), "include_usage"):
			return refused("stream_options names %q, which is not \"include_usage\": write \"include_usage\".", name)
		}
		return nil
	})
	return include, err
}

// withIncludeUsage returns body with stream_options.include_usage = true,
// every other byte as the client sent it.
func withIncludeUsage(body []byte, opts span) []byte {
	const tag = `"include_usage":true`
	if !opts.ok() {
		// {"stream_options":{"include_usage":true}, …the client's members}
		i := bytes.IndexByte(body, '{')
		rest := bytes.TrimLeft(body[i+1:], " \t\r\n")
		out := make([]byte, 0, len(body)+48)
		out = append(out, body[:i+1]...)
		out = append(out, `"stream_options":{`+tag+`}`...)
		if len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, body[i+1:]...)
	}
	raw := body[opts.start:opts.end]
	obj := make([]byte, 0, len(raw)+len(tag)+2)
	obj = append(obj, '{')
	obj = append(obj, tag...)
	if raw[0] == '{' {
		_ = eachMemberRaw(raw, func(name []byte, member []byte) error {
			if string(name) != "include_usage" {
				obj = append(obj, ',')
				obj = append(obj, member...)
			}
			return nil
		})
	}
	obj = append(obj, '}')
	out := make([]byte, 0, len(body)+len(obj))
	out = append(out, body[:opts.start]...)
	out = append(out, obj...)
	return append(out, body[opts.end:]...)
}

// eachMember calls fn with the exact (unescaped) name and the value span of
// every member of the JSON object obj (known to be valid JSON).
func eachMember(obj []byte, fn func(name []byte, val span) error) error {
	return scanObject(obj, func(name []byte, _ int, val span) error { return fn(name, val) })
}

// eachMemberRaw calls fn with each member's name and its raw bytes
// ("name":value).
func eachMemberRaw(obj []byte, fn func(name []byte, member []byte) error) error {
	return scanObject(obj, func(name []byte, start int, val span) error { return fn(name, obj[start:val.end]) })
}

// scanObject walks the top-level members of the valid JSON object obj; fn
// gets each name exactly (unescaped; valid only during the call).
func scanObject(obj []byte, fn func(name []byte, nameStart int, val span) error) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return refused("The request body must be a JSON object.")
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			return nil
		}
		if obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
		nameStart := i
		end := stringEnd(obj, i)
		n := obj[i+1 : end-1]
		if bytes.IndexByte(n, '\\') >= 0 {
			var u string
			if json.Unmarshal(obj[i:end], &u) != nil {
				return refused("The request body has a field name that cannot be decoded.")
			}
			n = []byte(u)
		}
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // ':'
		vEnd := valueEnd(obj, i)
		if err := fn(n, nameStart, span{i, vEnd}); err != nil {
			return err
		}
		i = vEnd
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for ; j < len(b); j++ {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j
		}
	}
	return j
}

// satAdd and satMul never wrap: they stop at math.MaxInt64 (inputs ≥ 0).
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satMul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

// jsonProblem describes a JSON error without quoting the body.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d.", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be a %s, not a JSON %s.", te.Field, te.Type, te.Value)
	}
	return "it could not be decoded."
}
