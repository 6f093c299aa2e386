package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"
)

// The hash chain.
//
// A line is the record's JSON object with "prev" and "hash" as its last two
// members:
//
//	{"time":…,"stage":…, … ,"prev":"<hash of the previous record>","hash":"<hash>"}
//
// hash is computed over the exact bytes of the line before `,"hash":` — the
// canonical record bytes, which end with the previous record's hash, so each
// hash covers the whole chain before it. It is "<64 hex>" = SHA-256, or
// "hmac-sha256:<64 hex>" = HMAC-SHA-256 keyed with audit.hmac_key_file. The
// first record of a trail has prev "". Rotated files continue the chain: the
// first record of a new file carries the last hash of the previous one.

const (
	hashSep     = `,"hash":"`
	prevTail    = `"prev":"","hash":""}`
	hmacPrefix  = "hmac-sha256:"
	hexHashSize = sha256.Size * 2
)

// errBadLine marks a line that is not a well-formed audit record.
var errBadLine = errors.New("not an audit record")

// hasher computes chain hashes and hmac-sha256: field values.
type hasher struct {
	key []byte // nil: plain SHA-256
}

// sum returns the chain hash of canonical record bytes.
func (h hasher) sum(canonical []byte) string {
	if h.key == nil {
		s := sha256.Sum256(canonical)
		return hex.EncodeToString(s[:])
	}
	m := hmac.New(sha256.New, h.key)
	m.Write(canonical)
	return hmacPrefix + hex.EncodeToString(m.Sum(nil))
}

// field returns the keyed digest of an identifying string, like Vault:
// "hmac-sha256:<hex>". Empty strings stay empty; without a key s is returned.
func (h hasher) field(s string) string {
	if h.key == nil || s == "" {
		return s
	}
	var m hash.Hash = hmac.New(sha256.New, h.key)
	m.Write([]byte("field\x00"))
	m.Write([]byte(s))
	return hmacPrefix + hex.EncodeToString(m.Sum(nil))
}

// encodeBody marshals r without its chain fields: the result ends just
// before `"prev":`, ready for appendLine.
func encodeBody(r *Record) ([]byte, error) {
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("encode audit record: time %v out of range", r.Time)
	}
	// 512: a metadata record's body is 300–450 bytes; the buffer never grows.
	return appendRecordBody(make([]byte, 0, 512+len(r.RequestBody)+len(r.ResponseBody)), r), nil
}

// appendLine appends the full line (newline included) for body chained to
// prev, and returns it with the new hash.
func (h hasher) appendLine(dst, body []byte, prev string) ([]byte, string) {
	start := len(dst)
	dst = append(dst, body...)
	dst = append(dst, `"prev":"`...)
	dst = append(dst, prev...)
	dst = append(dst, '"')
	sum := h.sum(dst[start:])
	dst = append(dst, hashSep...)
	dst = append(dst, sum...)
	dst = append(dst, "\"}\n"...)
	return dst, sum
}

// chainFields are the members of a record that verify and file ordering
// read (decoding only these is faster than a whole Record).
type chainFields struct {
	Time   time.Time `json:"time"`
	Stage  string    `json:"stage"`
	Action string    `json:"action"`
	Error  string    `json:"error"`
	Prev   string    `json:"prev"`
	Hash   string    `json:"hash"`
}

// parsedLine is one verified-looking line.
type parsedLine struct {
	rec       chainFields
	canonical []byte // bytes the hash covers
	hash      string // as written
}

// parseLine splits a line (without its newline) into record, canonical bytes
// and hash. It checks the layout only, not the hash.
func parseLine(line []byte) (*parsedLine, error) {
	i := bytes.LastIndex(line, []byte(hashSep))
	if i < 0 || !bytes.HasSuffix(line, []byte(`"}`)) || i+len(hashSep) > len(line)-2 {
		return nil, errBadLine
	}
	p := &parsedLine{canonical: line[:i], hash: string(line[i+len(hashSep) : len(line)-2])}
	if !validHash(p.hash) {
		return nil, errBadLine
	}
	if err := json.Unmarshal(line, &p.rec); err != nil {
		return nil, errBadLine
	}
	if p.rec.Hash != p.hash {
		return nil, errBadLine
	}
	return p, nil
}

// validHash reports whether s has the shape of a chain hash.
func validHash(s string) bool {
	if len(s) == len(hmacPrefix)+hexHashSize && s[:len(hmacPrefix)] == hmacPrefix {
		s = s[len(hmacPrefix):]
	}
	if len(s) != hexHashSize {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// keyed reports whether hash was made with an HMAC key.
func keyed(hash string) bool {
	return len(hash) > len(hmacPrefix) && hash[:len(hmacPrefix)] == hmacPrefix
}
