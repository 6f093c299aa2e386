package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/url"
	"path"
	"strings"
	"testing"
)

// refReserve is the reference semantics of the reservation, written the
// plain way: decode the object with exact names (a Go map keeps names as
// they are, like Python's json), then apply vLLM's rules.
func refReserve(t *testing.T, body []byte, rt *route, lim inspectLimits) int64 {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("accepted body is not a JSON object: %v", err)
	}
	num := func(name string) (int64, bool) {
		raw, ok := m[name]
		if !ok || string(raw) == "null" {
			return 0, false
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatalf("accepted %s = %s", name, raw)
		}
		return n, true
	}
	prompt := int64(len(m["messages"]) + len(m["prompt"]) + len(m["input"]))
	r := (prompt + 3) / 4
	switch rt.reserve {
	case reserveNothing:
		return 0
	case reservePrompt:
		return r
	}
	var tokens int64
	mt, mtOK := num("max_tokens")
	if rt.reserve == reserveChat {
		mct, mctOK := num("max_completion_tokens")
		switch {
		case mctOK && mct != 0:
			tokens = mct
		case mtOK:
			tokens = mt
		default:
			tokens = lim.defaultMaxTokens
		}
	} else {
		_, present := m["max_tokens"]
		switch {
		case mtOK:
			tokens = mt
		case !present:
			tokens = completionDefaultMaxTokens
		default:
			tokens = lim.defaultMaxTokens
		}
	}
	choices := int64(1)
	for _, f := range []string{"n", "best_of"} {
		if c, ok := num(f); ok && c > choices {
			choices = c
		}
	}
	if tokens < 0 || tokens > lim.maxModelLen || choices > maxChoices {
		t.Fatalf("accepted out-of-range values: tokens %d choices %d", tokens, choices)
	}
	return r + tokens*choices
}

// FuzzInspect: whatever the body, inspection never panics; what it accepts
// it reads exactly as the reference does (no reservation differs), names
// no field that only folds to a decided one, and forwards valid JSON that
// differs from the client's only by stream_options.include_usage.
func FuzzInspect(f *testing.F) {
	for _, s := range []string{
		`{"model":"glm-4.7-flash","messages":[{"role":"user","content":"hi"}],"max_tokens":100}`,
		`{"model":"m","prompt":"p","max_completion_tokens":0,"max_tokens":3000,"n":2}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":false}}`,
		`{"model":"m","max_completion_tokenſ":1,"max_tokens":100000}`,
		`{"model":"m","max_tokens":9223372036854775807,"n":2}`,
		`{"model":"m","input":["a","b"]}`,
		`{"mod\u0065l":"m","max_tokens":1e3}`,
		`{"model":"违禁词","messages":[{"role":"user","content":[{"type":"text","text":"ｆｕｌｌ"}]}]}`,
		`[1,2]`, `{`, `{"a":{"b":[{"c":"}"}]}}`,
	} {
		for _, p := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize"} {
			f.Add([]byte(s), p)
		}
	}
	lim := inspectLimits{defaultMaxTokens: 256, maxModelLen: 8192}
	f.Fuzz(func(t *testing.T, body []byte, p string) {
		rt := lookupRoute(p)
		if rt.body != bodyJSON {
			return
		}
		req, err := inspect(body, rt, lim)
		if err != nil {
			if _, ok := err.(*badRequest); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if got, want := req.reserve, refReserve(t, body, rt, lim); got != want {
			t.Fatalf("reserve %d, reference %d for %q on %s", got, want, body, p)
		}
		// Numbers as written (json.Number): 1e700 is valid JSON, out of
		// float64's range, and not the guard's to judge in a field it
		// does not decide.
		in, inErr := decodeObject(body)
		out, outErr := decodeObject(req.body)
		if inErr != nil || outErr != nil {
			t.Fatalf("forwarded body not a JSON object: %q (%v, %v)", req.body, inErr, outErr)
		}
		for name := range in {
			if f := foldsTo([]byte(name)); f != "" {
				t.Fatalf("accepted %q beside the decided %q", name, f)
			}
		}
		if !req.hideUsage {
			if !bytes.Equal(req.body, body) {
				t.Fatalf("body changed without a reason: %q → %q", body, req.body)
			}
			return
		}
		opts, _ := out["stream_options"].(map[string]any)
		if opts["include_usage"] != true {
			t.Fatalf("include_usage not set in %q", req.body)
		}
		delete(out, "stream_options")
		delete(in, "stream_options")
		if !maps.EqualFunc(in, out, func(a, b any) bool {
			x, _ := json.Marshal(a)
			y, _ := json.Marshal(b)
			return bytes.Equal(x, y)
		}) {
			t.Fatalf("members changed: %q → %q", body, req.body)
		}
	})
}

// FuzzCleanPath: a path the guard routes on is canonical (what
// path.Clean gives), absolute, and cannot spell a route through encoded
// or dot segments.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/v1/chat/completions", "/v1/../sleep", "/v1//models", "/%2e%2e/sleep",
		"/v1/models%2F..", "\\sleep", "/v1/chat/completions/", "/./v1/models", "/v1/mod%65ls", "/0?%2F"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			return
		}
		p, ok := cleanPath(u.RawPath, u.Path)
		if !ok {
			return
		}
		if p != path.Clean(p) || !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
			t.Fatalf("%q routed as %q", raw, p)
		}
		// Only the path is routed on: an encoded slash in the query ("/0?%2F",
		// found by CI) is the query's business.
		rawPath, _, _ := strings.Cut(raw, "?")
		lower := strings.ToLower(rawPath)
		if strings.Contains(lower, "%2f") || strings.Contains(lower, "%2e") || strings.Contains(lower, "%5c") {
			t.Fatalf("%q with an encoded slash or dot was routed as %q", raw, p)
		}
	})
}

// FuzzSSEFilter: the usage filter passes any upstream stream through byte
// for byte when the client asked for usage, and otherwise drops only whole
// usage-only events, whatever the read sizes.
func FuzzSSEFilter(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"), uint8(7), true)
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":-5}}\r\n\r\n: comment\n\nevent: x\ndata: y"), uint8(1), false)
	f.Add([]byte("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":9223372036854775807}}\n\n"), uint8(3), true)
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8, hide bool) {
		x := &exchange{hideUsage: hide}
		sf := &sseFilter{src: io.NopCloser(&chunkReader{b: stream, n: int(chunk%16) + 1}), x: x}
		out, err := io.ReadAll(sf)
		if err != nil {
			t.Fatal(err)
		}
		if !hide && !bytes.Equal(out, stream) {
			t.Fatalf("stream changed:\n%q\n→\n%q", stream, out)
		}
		if len(out) > len(stream) {
			t.Fatalf("output longer than input")
		}
		if x.usageSeen && (x.promptTokens < 0 || x.completionTokens < 0) {
			t.Fatalf("negative usage taken: %d %d", x.promptTokens, x.completionTokens)
		}
	})
}

// chunkReader returns b n bytes at a time.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(c.n, len(p), len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

// FuzzUsageOnlyNull checks the stream filter's fast path against the full
// parse: where usageOnlyNull says every top-level usage is null, a valid
// object has no usage the full parse would take.
func FuzzUsageOnlyNull(f *testing.F) {
	f.Add([]byte(`{"id":"x","choices":[{"delta":{"content":"\"usage\":{}"}}],"usage":null}`))
	f.Add([]byte(`{"usage":null,"usage":{"prompt_tokens":3}}`))
	f.Add([]byte(`{"usag\u0065":{"prompt_tokens":3},"usage":null}`))
	f.Add([]byte(`{"a":{"usage":{"prompt_tokens":1}},"usage" : null }`))
	f.Add([]byte(`{"usage":nullx}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast := usageOnlyNull(data)
		if !fast || !json.Valid(data) {
			return
		}
		_ = eachMember(data, func(name []byte, v span) error {
			if string(name) == "usage" && parseUsage(data[v.start:v.end]) != nil {
				t.Fatalf("fast path passed a usage on: %s", data)
			}
			return nil
		})
	})
}

// decodeObject decodes a JSON object keeping numbers as written.
func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("data after the object")
	}
	return m, nil
}
