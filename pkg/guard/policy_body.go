package guard

import (
	"bytes"
	"strconv"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The policy reads a request body the way inspect.go does: top-level names
// byte for byte (as vLLM, in Python, reads them), string values with their
// escapes decoded. Unlike inspect it never trusts the body: every index is
// checked, so any bytes at all come back as "malformed", never a panic.

// bodyFacts is what the policy reads from a request body.
type bodyFacts struct {
	malformed bool // not a JSON object this reader can walk
	// unreadable names prompt input the rules cannot read ("" = none):
	// token IDs or prompt embeddings.
	unreadable string
	// denied is the first denied parameter the body turns on, "" if none.
	denied string
	// maxTokens and maxCompletionTokens are the raw values of those
	// members (nil: absent).
	maxTokens, maxCompletionTokens []byte
}

// maxCollectDepth bounds the nesting the prompt text is collected from;
// deeper prompt input is unreadable.
const maxCollectDepth = 64

// Top-level members whose strings reach the prompt the model sees: the
// chat messages (their content and content parts, names, tool calls), the
// completion prompt and suffix, embedding input, and what chat templates
// render besides messages (documents, tool definitions, a request's own
// template and its arguments).
func promptField(name []byte) (scan, tokens bool) {
	switch string(name) {
	case fieldMessages, "suffix", "documents", "tools", "chat_template", "chat_template_kwargs":
		return true, false
	case fieldPrompt, fieldInput:
		return true, true // numbers there are token IDs
	}
	return false, false
}

// skippedKey reports members inside prompt input whose values are not text
// (media and identifiers): base64 images would cost time and match short
// literals by chance.
func skippedKey(name []byte) bool {
	switch string(name) {
	case "type", "role", "id", "tool_call_id", "image_url", "input_audio", "audio_url", "video_url",
		"file", "image", "audio", "video", "image_embeds", "cache_control":
		return true
	}
	return false
}

// bodyScan walks one body.
type bodyScan struct {
	b    []byte
	i    int
	bad  bool
	text []byte // normalised prompt text, one line per string
	segs int    // strings in text
	tmp  []byte // decoded string scratch
	name []byte // decoded member name scratch
	// collect asks for the prompt text (the policy has rules).
	collect bool
	facts   bodyFacts
}

// readBody walks body for the policy: deny lists the parameters to refuse.
func (sc *bodyScan) readBody(body []byte, deny []string) {
	sc.b, sc.i, sc.bad = body, 0, false
	sc.text, sc.segs = sc.text[:0], 0
	sc.facts = bodyFacts{}
	sc.ws()
	if !sc.eat('{') {
		sc.facts.malformed = true
		return
	}
	sc.ws()
	if sc.eat('}') {
		return
	}
	for !sc.bad {
		sc.ws()
		name := sc.memberName()
		sc.ws()
		if !sc.eat(':') {
			sc.bad = true
			break
		}
		sc.ws()
		start := sc.i
		scan, tokens := promptField(name)
		switch {
		case scan && sc.collect:
			sc.collectValue(tokens, 0)
		case string(name) == "prompt_embeds":
			sc.skip()
			if v := sc.b[start:sc.i]; !sc.bad && !inert(v) {
				sc.facts.unreadable = "prompt embeddings"
			}
		default:
			sc.skip()
		}
		if sc.bad {
			break
		}
		v := sc.b[start:sc.i]
		switch string(name) {
		case fieldMaxTokens:
			sc.facts.maxTokens = v
		case fieldMaxCompletionTokens:
			sc.facts.maxCompletionTokens = v
		}
		if sc.facts.denied == "" {
			for _, d := range deny {
				if d == string(name) && !(inert(v) || (d == fieldN || d == fieldBestOf) && string(v) == "1") {
					sc.facts.denied = d
				}
			}
		}
		sc.ws()
		if sc.eat(',') {
			continue
		}
		if sc.eat('}') {
			sc.ws()
			if sc.i != len(sc.b) {
				sc.bad = true // data after the object
			}
			break
		}
		sc.bad = true
	}
	if sc.bad {
		sc.facts.malformed = true
	}
}

// inert reports whether a parameter's value leaves it off: null, false, an
// empty list or object.
func inert(v []byte) bool {
	switch string(v) {
	case "null", "false":
		return true
	}
	if len(v) >= 2 && (v[0] == '[' && v[len(v)-1] == ']' || v[0] == '{' && v[len(v)-1] == '}') {
		return len(bytes.TrimLeft(v[1:len(v)-1], " \t\r\n")) == 0
	}
	return false
}

func (sc *bodyScan) ws() {
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ' ', '\t', '\r', '\n':
			sc.i++
		default:
			return
		}
	}
}

// eat consumes c if it comes next.
func (sc *bodyScan) eat(c byte) bool {
	if sc.i < len(sc.b) && sc.b[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// rawString consumes a string and returns its raw content (between the
// quotes) and whether it has escapes.
func (sc *bodyScan) rawString() ([]byte, bool) {
	if !sc.eat('"') {
		sc.bad = true
		return nil, false
	}
	start := sc.i
	for {
		j := bytes.IndexByte(sc.b[sc.i:], '"')
		if j < 0 {
			sc.bad = true
			return nil, false
		}
		end := sc.i + j
		sc.i = end + 1
		k := end // an odd run of backslashes before the quote escapes it
		for k > start && sc.b[k-1] == '\\' {
			k--
		}
		if (end-k)%2 == 0 {
			raw := sc.b[start:end]
			return raw, bytes.IndexByte(raw, '\\') >= 0
		}
	}
}

// memberName reads a member name exactly (escapes decoded).
func (sc *bodyScan) memberName() []byte {
	raw, esc := sc.rawString()
	if !esc || sc.bad {
		return raw
	}
	var ok bool
	sc.name, ok = appendUnescaped(sc.name[:0], raw)
	if !ok {
		sc.bad = true
	}
	return sc.name
}

// skip consumes one value of any kind, without recursion.
func (sc *bodyScan) skip() {
	if sc.i >= len(sc.b) {
		sc.bad = true
		return
	}
	switch sc.b[sc.i] {
	case '"':
		sc.rawString()
		return
	case '{', '[':
		depth := 0
		for sc.i < len(sc.b) {
			switch sc.b[sc.i] {
			case '"':
				if sc.rawString(); sc.bad {
					return
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					sc.i++
					return
				}
			}
			sc.i++
		}
		sc.bad = true
		return
	}
	start := sc.i // a number, true, false or null
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\r', '\n':
			sc.bad = sc.bad || sc.i == start
			return
		}
		sc.i++
	}
	sc.bad = sc.bad || sc.i == start
}

// collectValue consumes a value, adding its strings to the prompt text.
// tokens: numbers are token IDs (prompt, input).
func (sc *bodyScan) collectValue(tokens bool, depth int) {
	if depth > maxCollectDepth {
		sc.facts.unreadable = "nesting too deep"
		sc.skip()
		return
	}
	if sc.i >= len(sc.b) {
		sc.bad = true
		return
	}
	switch c := sc.b[sc.i]; {
	case c == '"':
		raw, esc := sc.rawString()
		if sc.bad {
			return
		}
		if esc {
			var ok bool
			if sc.tmp, ok = appendUnescaped(sc.tmp[:0], raw); !ok {
				sc.bad = true
				return
			}
			raw = sc.tmp
		}
		if sc.segs > 0 {
			sc.text = append(sc.text, '\n')
		}
		sc.segs++
		sc.text = appendNormalized(sc.text, raw)
	case c == '[':
		sc.i++
		sc.ws()
		if sc.eat(']') {
			return
		}
		for !sc.bad {
			sc.ws()
			sc.collectValue(tokens, depth+1)
			sc.ws()
			if sc.eat(',') {
				continue
			}
			if !sc.eat(']') {
				sc.bad = true
			}
			return
		}
	case c == '{':
		sc.i++
		sc.ws()
		if sc.eat('}') {
			return
		}
		for !sc.bad {
			sc.ws()
			name := sc.memberName()
			skipped := skippedKey(name)
			sc.ws()
			if !sc.eat(':') {
				sc.bad = true
				return
			}
			sc.ws()
			if skipped {
				sc.skip()
			} else {
				sc.collectValue(tokens, depth+1)
			}
			sc.ws()
			if sc.eat(',') {
				continue
			}
			if !sc.eat('}') {
				sc.bad = true
			}
			return
		}
	case c == '-' || c >= '0' && c <= '9':
		if tokens {
			sc.facts.unreadable = "token IDs"
		}
		sc.skip()
	default: // true, false, null
		sc.skip()
	}
}

// appendUnescaped appends the JSON string content raw with its escapes
// decoded; ok is false for a bad escape. Lone surrogates become U+FFFD,
// as encoding/json decodes them.
func appendUnescaped(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(raw) {
			return dst, false
		}
		switch raw[i] {
		case '"', '\\', '/':
			dst = append(dst, raw[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw, i+1)
			if !ok {
				return dst, false
			}
			i += 4
			if r >= 0xD800 && r < 0xDC00 {
				if lo, ok := hex4(raw, i+3); ok && i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' && lo >= 0xDC00 && lo < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
					i += 6
				} else {
					r = utf8.RuneError
				}
			} else if r >= 0xDC00 && r < 0xE000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

// hex4 reads four hex digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(raw) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(raw[i:i+4]), 16, 32)
	return rune(n), err == nil
}

// appendNormalized appends s as the rules see it: valid UTF-8 (bad bytes as
// U+FFFD), default-ignorable characters (zero-width spaces and joiners,
// soft hyphens, variation selectors, bidi controls…) removed, then NFKC, so
// full-width, ligature, circled and other compatibility spellings read as
// their plain letters. Case is left alone: literals match it
// case-insensitively, patterns as they ask.
//
// Most text never reaches the normaliser: ASCII is its own NFKC, and a
// string whose other characters are all in nfkcTable (BMP characters that
// start a normalisation segment and normalise to one BMP character: CJK
// ideographs and punctuation, kana, Hangul syllables, full-width forms,
// most alphabets) normalises character by character.
func appendNormalized(dst, s []byte) []byte {
	start := len(dst)
	tbl := nfkcTable()
	run := 0 // s[run:i] is copied as it is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		var r rune
		n := 3
		if c&0xF0 == 0xE0 && i+2 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80 {
			r = rune(c&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F) // CJK, kana, full-width…
		}
		if r < 0x800 { // not a well-formed three-byte sequence
			r, n = utf8.DecodeRune(s[i:])
		}
		m := uint16(0)
		if r < 0x10000 && n > 1 {
			m = tbl[r] // 0 for surrogates
		}
		switch {
		case m == 0: // decoding errors, and what needs the normaliser
			return appendNormalizedSlow(dst[:start], s)
		case rune(m) != r:
			dst = append(dst, s[run:i]...)
			dst = utf8.AppendRune(dst, rune(m))
			run = i + n
		}
		i += n
	}
	return append(dst, s[run:]...)
}

// appendNormalizedSlow is appendNormalized through x/text's normaliser.
func appendNormalizedSlow(dst, s []byte) []byte {
	if !utf8.Valid(s) {
		s = bytes.ToValidUTF8(s, []byte("\uFFFD"))
	}
	if hasIgnorable(s) {
		t := make([]byte, 0, len(s))
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRune(s[i:])
			if !isIgnorable(r) {
				t = append(t, s[i:i+n]...)
			}
			i += n
		}
		s = t
	}
	return norm.NFKC.Append(dst, s...)
}

// nfkcTable maps each BMP character that normalises on its own (it starts
// a segment: nothing before it can combine with it) to its NFKC form when
// that is one BMP character and neither is default-ignorable; 0 otherwise.
// A string of ASCII and such characters normalises character by character.
// Built on first use (about 4 ms).
var nfkcTable = sync.OnceValue(func() *[0x10000]uint16 {
	t := new([0x10000]uint16)
	var in, out []byte
	for r := rune(utf8.RuneSelf); r < 0x10000; r++ {
		if r >= 0xD800 && r < 0xE000 || isIgnorable(r) {
			continue
		}
		in = utf8.AppendRune(in[:0], r)
		if !norm.NFKC.Properties(in).BoundaryBefore() {
			continue
		}
		out = norm.NFKC.Append(out[:0], in...)
		m, n := utf8.DecodeRune(out)
		if n != len(out) || m >= 0x10000 || m == 0 || isIgnorable(m) {
			continue
		}
		t[r] = uint16(m)
	}
	return t
})

// normalizeString is appendNormalized for a rule's literal text.
func normalizeString(s string) string { return string(appendNormalized(nil, []byte(s))) }

func hasIgnorable(s []byte) bool {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if isIgnorable(r) {
			return true
		}
		i += n
	}
	return false
}

// isIgnorable reports Unicode's Default_Ignorable_Code_Point (DerivedCore
// Properties): characters that render as nothing and so can be slipped
// between the letters of a blocked word.
func isIgnorable(r rune) bool {
	switch {
	case r < 0xAD:
		return false
	case r == 0xAD, r == 0x34F, r == 0x61C, r == 0x115F, r == 0x1160, r == 0x17B4, r == 0x17B5,
		r >= 0x180B && r <= 0x180F, r >= 0x200B && r <= 0x200F, r >= 0x202A && r <= 0x202E,
		r >= 0x2060 && r <= 0x206F, r == 0x3164, r >= 0xFE00 && r <= 0xFE0F, r == 0xFEFF, r == 0xFFA0,
		r >= 0xFFF0 && r <= 0xFFF8, r >= 0x1BCA0 && r <= 0x1BCA3, r >= 0x1D173 && r <= 0x1D17A,
		r >= 0xE0000 && r <= 0xE0FFF:
		return true
	}
	return false
}

// withMaxTokens returns body (a JSON object) with its top-level max_tokens
// set to n: the member's value replaced where it is, or the member added
// first. Every other byte stays as the client sent it.
func withMaxTokens(body []byte, n int64) []byte {
	val := strconv.AppendInt(nil, n, 10)
	sc := &bodyScan{b: body}
	sc.ws()
	if !sc.eat('{') {
		return body
	}
	var spans [][2]int
	for sc.ws(); !sc.bad && sc.i < len(sc.b) && sc.b[sc.i] != '}'; {
		name := sc.memberName()
		sc.ws()
		if !sc.eat(':') {
			break
		}
		sc.ws()
		start := sc.i
		sc.skip()
		if string(name) == fieldMaxTokens && !sc.bad {
			spans = append(spans, [2]int{start, sc.i})
		}
		sc.ws()
		if !sc.eat(',') {
			break
		}
		sc.ws()
	}
	out := make([]byte, 0, len(body)+len(val)+16)
	if len(spans) == 0 {
		i := bytes.IndexByte(body, '{') + 1
		out = append(out, body[:i]...)
		out = append(out, `"max_tokens":`...)
		out = append(out, val...)
		if rest := bytes.TrimLeft(body[i:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, body[i:]...)
	}
	last := 0
	for _, s := range spans {
		out = append(out, body[last:s[0]]...)
		out = append(out, val...)
		last = s[1]
	}
	return append(out, body[last:]...)
}
