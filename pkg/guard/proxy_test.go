package guard

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestFindUsage(t *testing.T) {
	cases := []struct {
		body             string
		prompt, complete int64
		ok               bool
	}{
		{`{"choices":[{"text":"a \"usage\": {\"prompt_tokens\": 99} }"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}}`, 3, 4, true},
		{`{"usage": {"prompt_tokens": 5, "total_tokens": 5}, "data": []}`, 5, 0, true},
		{`{"usage" : {"prompt_tokens": 2, "completion_tokens": 1}}`, 2, 1, true}, // falls back to a full decode
		{`{"choices": []}`, 0, 0, false},
		{`not json`, 0, 0, false},
	}
	for _, tc := range cases {
		u := findUsage([]byte(tc.body))
		if (u != nil) != tc.ok {
			t.Fatalf("%s: usage %v", tc.body, u)
		}
		if u != nil && (u.PromptTokens != tc.prompt || u.CompletionTokens != tc.complete) {
			t.Fatalf("%s: got %+v", tc.body, u)
		}
	}
}

// TestSSEFilterSplitReads feeds a stream one byte at a time, with CRLF
// events, and checks that events pass whole, the usage-only chunk is removed
// when hidden, and usage is read.
func TestSSEFilterSplitReads(t *testing.T) {
	stream := "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\r\n\r\n" +
		": comment\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n" +
		"data: [DONE]\n\n"
	for _, hide := range []bool{true, false} {
		x := &exchange{hideUsage: hide}
		f := &sseFilter{src: io.NopCloser(iotest.OneByteReader(strings.NewReader(stream))), x: x}
		out, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		if !x.usageSeen || x.promptTokens != 3 || x.completionTokens != 2 || !x.upstreamDone {
			t.Fatalf("hide=%v: exchange %+v", hide, x)
		}
		hasUsage := strings.Contains(string(out), `"prompt_tokens":3`)
		if hasUsage == hide {
			t.Fatalf("hide=%v: output\n%s", hide, out)
		}
		if !strings.HasSuffix(string(out), "data: [DONE]\n\n") || !strings.Contains(string(out), ": comment\n\n") {
			t.Fatalf("events lost:\n%q", out)
		}
	}
}

// TestSSEFilterTruncatedStream: a stream cut without usage is not marked as
// complete, so its reservation is charged.
func TestSSEFilterTruncatedStream(t *testing.T) {
	x := &exchange{hideUsage: true}
	src := io.MultiReader(strings.NewReader("data: {\"choices\":[{}]}\n\ndata: {\"cho"), iotest.ErrReader(io.ErrUnexpectedEOF))
	f := &sseFilter{src: io.NopCloser(src), x: x}
	out, err := io.ReadAll(f)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
	if x.usageSeen || x.upstreamDone {
		t.Fatalf("exchange %+v", x)
	}
	if !strings.HasPrefix(string(out), "data: {\"choices\":[{}]}\n\n") {
		t.Fatalf("out %q", out)
	}
}
