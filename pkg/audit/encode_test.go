package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// marshalReference is how records were encoded before appendRecordBody:
// encoding/json, less the chain fields.
func marshalReference(t *testing.T, r *Record) []byte {
	c := *r
	c.Prev, c.Hash = "", ""
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte(prevTail)) {
		t.Fatalf("layout: %s", b)
	}
	return b[:len(b)-len(prevTail)]
}

// FuzzAppendRecordBody: the hand-written encoder writes exactly what
// encoding/json writes, for any strings (invalid UTF-8, HTML characters,
// U+2028…) and numbers.
func FuzzAppendRecordBody(f *testing.F) {
	f.Add("req_1", "alice", "/v1/chat/completions", "glm-4.7-flash", "<script>&\u2028\u2029\x00\xff\"\\\n\t", int64(1_800_000_000_123456789), 200, 12.345, 1e-7, int64(99), true)
	f.Add("", "", "", "", "违禁词 ｆｕｌｌ", int64(0), 0, 0.0, 1e21, int64(-1), false)
	f.Add("x", "k", "p", "m", "\x7f\x1f", int64(-5), -1, math.Copysign(0, -1), 123456789012345678901234.0, int64(math.MaxInt64), false)
	f.Fuzz(func(t *testing.T, id, key, path, model, text string, ns int64, status int, lat, ttft float64, bytesIn int64, stream bool) {
		if math.IsNaN(lat) || math.IsInf(lat, 0) || math.IsNaN(ttft) || math.IsInf(ttft, 0) {
			return // encoding/json refuses them; records never hold them
		}
		r := &Record{Time: time.Unix(0, ns).UTC(), Stage: StageCompleted, RequestID: id, Key: key, Client: text,
			Path: path, Model: model, Stream: stream, Status: status, Error: text, PromptTokens: status,
			LatencyMS: lat, TTFTMS: ttft, BytesIn: bytesIn, BytesOut: -bytesIn, UserAgent: text,
			RequestBody: text + id, ResponseBody: model + text}
		for i := range len(id) % 3 { // none, one or two policy decisions
			r.Policy = append(r.Policy, PolicyHit{Rule: key + model[:min(i, len(model))], Action: text})
		}
		if y := r.Time.Year(); y < 0 || y > 9999 {
			return
		}
		got, err := encodeBody(r)
		if err != nil {
			t.Fatal(err)
		}
		if want := marshalReference(t, r); !bytes.Equal(got, want) {
			t.Fatalf("encodeBody:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}

func BenchmarkEncodeBody(b *testing.B) {
	r := &Record{Time: time.Now().UTC(), Stage: StageCompleted, RequestID: "req_0123456789abcdef01234567", Key: "alice",
		Role: "user", Client: "127.0.0.1", Method: "POST", Path: "/v1/chat/completions", Model: "glm-4.7-flash",
		Status: 200, PromptTokens: 11, CompletionTokens: 7, LatencyMS: 1.234, TTFTMS: 0.5, BytesIn: 90, BytesOut: 300,
		UserAgent: "OpenAI/Go 3.0"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeBody(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBodyJSON(b *testing.B) {
	r := &Record{Time: time.Now().UTC(), Stage: StageCompleted, RequestID: "req_0123456789abcdef01234567", Key: "alice",
		Role: "user", Client: "127.0.0.1", Method: "POST", Path: "/v1/chat/completions", Model: "glm-4.7-flash",
		Status: 200, PromptTokens: 11, CompletionTokens: 7, LatencyMS: 1.234, TTFTMS: 0.5, BytesIn: 90, BytesOut: 300,
		UserAgent: "OpenAI/Go 3.0"}
	b.ReportAllocs()
	for b.Loop() {
		c := *r
		if _, err := json.Marshal(&c); err != nil {
			b.Fatal(err)
		}
	}
}
