package jsonc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Doc is a commented JSON document kept together with its stripped form, so
// callers can walk objects member by member (in file order) and report
// semantic problems at the original line:column.
type Doc struct {
	src   []byte
	clean []byte
}

// Member is one name/value pair of a JSON object.
type Member struct {
	Name        string
	Value       json.RawMessage // comments blanked out
	Offset      int64           // byte offset of the name's opening quote
	ValueOffset int64           // byte offset of the value's first byte
}

// NewDoc prepares src for walking. It does not validate it; use Members.
func NewDoc(src []byte) *Doc { return &Doc{src: src, clean: Strip(src)} }

// Errorf returns an *Error located at the byte offset off of the document.
func (d *Doc) Errorf(off int64, format string, args ...any) error {
	line, col := Position(d.src, off)
	return &Error{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// Root returns the members of the top-level object, in file order.
func (d *Doc) Root() ([]Member, error) {
	if err := Unmarshal(d.src, new(json.RawMessage)); err != nil {
		return nil, err // whole-document syntax check with positions
	}
	off := skipSpace(d.clean, 0)
	if off >= int64(len(d.clean)) || d.clean[off] != '{' {
		return nil, d.Errorf(off, "the file must hold a JSON object")
	}
	return d.Members(Member{Value: d.clean[off:], ValueOffset: off})
}

// Members returns the members of the object held by m, in file order. The
// document is known to be valid JSON (Root checked it); a value that is not
// an object is reported at its position.
func (d *Doc) Members(m Member) ([]Member, error) {
	v := bytes.TrimLeft(m.Value, " \t\r\n")
	if len(v) == 0 || v[0] != '{' {
		return nil, d.Errorf(m.ValueOffset, "%s must be an object", quoteName(m.Name))
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	base := m.ValueOffset + int64(len(m.Value)-len(v))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, d.Errorf(base, "%v", err)
	}
	var out []Member
	for dec.More() {
		nameOff := base + skipSep(v, dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return nil, d.Errorf(nameOff, "%v", err)
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		valStart := dec.InputOffset()
		if err := dec.Decode(&raw); err != nil {
			return nil, d.Errorf(base+valStart, "%v", err)
		}
		valOff := base + skipSep(v, valStart)
		out = append(out, Member{Name: name, Value: raw, Offset: nameOff, ValueOffset: valOff})
	}
	return out, nil
}

// Decode decodes m's value into v, locating type errors in the document.
func (d *Doc) Decode(m Member, v any) error {
	err := json.Unmarshal(m.Value, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		msg := fmt.Sprintf("cannot use a JSON %s as %s", te.Value, te.Type)
		if te.Field != "" {
			msg = fmt.Sprintf("%s.%s: %s", m.Name, te.Field, msg)
		} else {
			msg = fmt.Sprintf("%s: %s", quoteName(m.Name), msg)
		}
		return d.Errorf(m.ValueOffset, "%s", msg)
	}
	return d.Errorf(m.ValueOffset, "%s: %v", quoteName(m.Name), err)
}

func quoteName(n string) string {
	if n == "" {
		return "the value"
	}
	return fmt.Sprintf("%q", n)
}

func skipSpace(b []byte, off int64) int64 {
	for off < int64(len(b)) {
		switch b[off] {
		case ' ', '\t', '\r', '\n':
			off++
		default:
			return off
		}
	}
	return off
}

// skipSep skips whitespace and the ',' or ':' separating JSON tokens.
func skipSep(b []byte, off int64) int64 {
	for off < int64(len(b)) {
		switch b[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}
