package audit

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecordBody appends r as JSON without its chain fields, ending just
// before `"prev":` (see encodeBody). It writes what encoding/json writes
// for a Record, byte for byte (FuzzAppendRecordBody holds it to that), at a
// fraction of its cost: it runs for every request, twice.
func appendRecordBody(b []byte, r *Record) []byte {
	b = append(b, `{"time":`...)
	b = appendTime(b, r.Time)
	b = appendStringField(b, "stage", r.Stage, true)
	b = appendStringField(b, "request_id", r.RequestID, false)
	b = appendStringField(b, "key", r.Key, false)
	b = appendStringField(b, "role", r.Role, false)
	b = appendStringField(b, "client", r.Client, false)
	b = appendStringField(b, "method", r.Method, false)
	b = appendStringField(b, "path", r.Path, false)
	b = appendStringField(b, "model", r.Model, false)
	if r.Stream {
		b = append(b, `,"stream":true`...)
	}
	b = appendIntField(b, "status", int64(r.Status))
	b = appendStringField(b, "error", r.Error, false)
	b = appendIntField(b, "prompt_tokens", int64(r.PromptTokens))
	b = appendIntField(b, "completion_tokens", int64(r.CompletionTokens))
	b = appendFloatField(b, "latency_ms", r.LatencyMS)
	b = appendFloatField(b, "ttft_ms", r.TTFTMS)
	b = appendIntField(b, "bytes_in", r.BytesIn)
	b = appendIntField(b, "bytes_out", r.BytesOut)
	b = appendStringField(b, "limit", r.Limit, false)
	if len(r.Policy) > 0 {
		b = append(b, `,"policy":[`...)
		for i, h := range r.Policy {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"rule":`...)
			b = appendJSONString(b, h.Rule)
			b = append(b, `,"action":`...)
			b = appendJSONString(b, h.Action)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendStringField(b, "user_agent", r.UserAgent, false)
	b = appendStringField(b, "action", r.Action, false)
	b = appendStringField(b, "target", r.Target, false)
	b = appendStringField(b, "request_body", r.RequestBody, false)
	b = appendStringField(b, "response_body", r.ResponseBody, false)
	return append(b, ',')
}

// appendTime writes t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds, quoted).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendStringField(b []byte, name, v string, always bool) []byte {
	if v == "" && !always {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

func appendIntField(b []byte, name string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// appendFloatField writes a float as encoding/json does: shortest decimal,
// exponent form only below 1e-6 or from 1e21, with a one-digit exponent
// kept short ("1e-07" → "1e-7").
func appendFloatField(b []byte, name string, f float64) []byte {
	if f == 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return b // zero is omitted; NaN and ±Inf are never produced
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	abs, format := math.Abs(f), byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		n := len(b) - start
		if n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does: HTML-safe (<, >, & as
// \u003c…), control characters escaped, invalid UTF-8 as \ufffd, and
// U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
