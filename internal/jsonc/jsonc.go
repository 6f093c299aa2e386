// Package jsonc reads "JSON with comments": the tutorial's configuration files
// carry `#` and `//` comments, which encoding/json refuses. Comments outside
// strings are blanked out byte for byte (newlines kept), so every offset in
// the stripped text is the offset in the original file and errors point at the
// original line:column.
package jsonc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Error is a parse or type error located in the original (commented) text.
// Syntax errors point at the offending character; type errors from
// Unmarshal point just after the value of the wrong type (Doc.Decode points
// at the start of the member's value).
type Error struct {
	Line int // 1-based
	Col  int // 1-based, counted in characters (runes) of the original line
	Msg  string
	Err  error // the underlying encoding/json error
}

// Error returns "line:col: message".
func (e *Error) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

// Unwrap returns the encoding/json error.
func (e *Error) Unwrap() error { return e.Err }

// Strip returns a copy of src with every `#…` and `//…` comment that lies
// outside a JSON string replaced by spaces up to the end of its line. The
// result has the same length as src, so byte offsets are unchanged.
func Strip(src []byte) []byte {
	out := make([]byte, len(src))
	copy(out, src)
	inString, escaped := false, false
	for i := 0; i < len(out); i++ {
		c := out[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			case c == '\n':
				inString = false // unterminated string: let the decoder report it
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
		case c == '#' || (c == '/' && i+1 < len(out) && out[i+1] == '/'):
			for i < len(out) && out[i] != '\n' && out[i] != '\r' {
				out[i] = ' '
				i++
			}
			i-- // let the loop see the newline
		}
	}
	return out
}

// Position converts a byte offset in src into a 1-based line and a 1-based
// column counted in runes. An offset inside a multi-byte character gives
// that character's column.
func Position(src []byte, offset int64) (line, col int) {
	if offset > int64(len(src)) {
		offset = int64(len(src))
	}
	if offset < 0 {
		offset = 0
	}
	before := src[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = 1
	// Count the characters that end at or before offset, decoding from the
	// line's start in the whole text so a character cut by offset is not
	// counted as invalid bytes.
	for i := bytes.LastIndexByte(before, '\n') + 1; i < len(before); {
		_, size := utf8.DecodeRune(src[i:])
		if i+size > len(before) {
			break
		}
		i += size
		col++
	}
	return line, col
}

// Unmarshal strips comments from src and decodes it into v. Syntax and type
// errors come back as *Error with the position in src. Unknown fields are
// accepted (callers that want to warn about them decode into raw maps).
func Unmarshal(src []byte, v any) error {
	clean := Strip(src)
	dec := json.NewDecoder(bytes.NewReader(clean))
	if err := dec.Decode(v); err != nil {
		return locate(src, dec, err)
	}
	// Only whitespace may follow the value.
	off := dec.InputOffset()
	rest := clean[off:]
	if trimmed := bytes.TrimLeft(rest, " \t\r\n"); len(trimmed) > 0 {
		line, col := Position(src, off+int64(len(rest)-len(trimmed)))
		return &Error{Line: line, Col: col, Msg: "unexpected data after the top-level value"}
	}
	return nil
}

func locate(src []byte, dec *json.Decoder, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		// The offset is just after the offending byte.
		off := se.Offset - 1
		if off < 0 {
			off = 0
		}
		line, col := Position(src, off)
		return &Error{Line: line, Col: col, Msg: se.Error(), Err: err}
	case errors.As(err, &te):
		line, col := Position(src, te.Offset)
		msg := fmt.Sprintf("cannot use a JSON %s as %s", te.Value, te.Type)
		if te.Field != "" {
			msg = fmt.Sprintf("field %q: %s", te.Field, msg)
		}
		return &Error{Line: line, Col: col, Msg: msg, Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		line, col := Position(src, int64(len(src)))
		return &Error{Line: line, Col: col, Msg: "unexpected end of file", Err: err}
	default:
		line, col := Position(src, dec.InputOffset())
		return &Error{Line: line, Col: col, Msg: err.Error(), Err: err}
	}
}

// fileError is an *Error located in a named file.
type fileError struct {
	path string
	err  *Error
}

// Error returns "path:line:col: message".
func (e *fileError) Error() string { return e.path + ":" + e.err.Error() }

// Unwrap returns the located *Error.
func (e *fileError) Unwrap() error { return e.err }

// InFile prefixes every *Error in err (a single error or an errors.Join of
// them) with path, so each reads "path:line:col: message", the form editors
// and terminals jump to. Other errors are prefixed "path: ". errors.As still
// finds the *Error. A nil err stays nil.
func InFile(path string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, InFile(path, e))
		}
		return errors.Join(out...)
	}
	if je, ok := err.(*Error); ok {
		return &fileError{path: path, err: je}
	}
	return fmt.Errorf("%s: %w", path, err)
}
