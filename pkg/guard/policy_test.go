package guard

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

const chatRoute = "/v1/chat/completions"

// mustPolicy compiles cfg or fails the test.
func mustPolicy(tb testing.TB, cfg *config.Policy) *Policy {
	tb.Helper()
	p, err := CompilePolicy(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func literalRule(name, action string, lits ...string) *config.PolicyRule {
	return &config.PolicyRule{Name: name, Literal: lits, Action: action}
}

func patternRule(name, action, pattern string) *config.PolicyRule {
	return &config.PolicyRule{Name: name, Pattern: pattern, Action: action}
}

// chatRequest is a chat request whose one user message says content.
func chatRequest(content string) []byte {
	c, _ := json.Marshal(content)
	return []byte(`{"model":"glm-4.7-flash","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":` + string(c) + `}]}`)
}

func hits(v Verdict) string {
	var s []string
	for _, h := range v.Hits {
		s = append(s, h.Rule+":"+h.Action)
	}
	return strings.Join(s, ",")
}

// The example policy, plus one of each kind.
func examplePolicy(tb testing.TB) *Policy {
	return mustPolicy(tb, &config.Policy{
		MaxPromptTokens: 8000,
		MaxTokens:       2000,
		DenyParams:      []string{"logprobs", "tools", "n"},
		Rules: []*config.PolicyRule{
			patternRule("no-credentials", config.PolicyReject, `(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY`),
			literalRule("watchlist", config.PolicyFlag, "违禁词", "forbidden phrase"),
			patternRule("card", config.PolicyFlag, `\b\d{4}([ -]?\d{4}){3}\b`),
		},
	})
}

func TestPolicyNil(t *testing.T) {
	p, err := CompilePolicy(nil)
	if err != nil || p != nil {
		t.Fatalf("CompilePolicy(nil) = %v, %v", p, err)
	}
	if v := p.Check([]byte("not json"), chatRoute, 1<<40, 1<<40); v.Rejected || len(v.Hits) != 0 || v.MaxTokens != 0 {
		t.Fatalf("nil policy: %+v", v)
	}
	if p.Rules() != 0 || len(p.RuleNames()) != 4 {
		t.Fatalf("nil policy rules %d names %v", p.Rules(), p.RuleNames())
	}
}

// TestPolicyRules: each rule kind with each action, on each route's prompt
// field; the 400 names the rule and never the text.
func TestPolicyRules(t *testing.T) {
	p := examplePolicy(t)
	cases := []struct {
		name, route, body string
		rejected          bool
		rule, hits        string
	}{
		{"clean", chatRoute, string(chatRequest("Summarise the meeting notes.")), false, "", ""},
		{"pattern reject", chatRoute, string(chatRequest("here: -----begin rsa private key-----\nMIIE")), true, "no-credentials", "no-credentials:reject"},
		{"literal flag CJK", chatRoute, string(chatRequest("这是违禁词吗？")), false, "", "watchlist:flag"},
		{"literal flag ASCII folded", chatRoute, string(chatRequest("a FORBIDDEN Phrase here")), false, "", "watchlist:flag"},
		{"pattern flag", chatRoute, string(chatRequest("card 4111 1111 1111 1111 thanks")), false, "", "card:flag"},
		{"all rules, reject named", chatRoute, string(chatRequest("违禁词 4111-1111-1111-1111 BEGIN OPENSSH PRIVATE KEY")), true, "no-credentials", "no-credentials:reject,watchlist:flag,card:flag"},
		{"completions prompt string", "/v1/completions", `{"model":"m","prompt":"BEGIN RSA PRIVATE KEY"}`, true, "no-credentials", "no-credentials:reject"},
		{"completions prompt list", "/v1/completions", `{"model":"m","prompt":["fine","违禁词"]}`, false, "", "watchlist:flag"},
		{"embeddings input", "/v1/embeddings", `{"model":"m","input":["违禁词"]}`, false, "", "watchlist:flag"},
		{"escaped", chatRoute, `{"messages":[{"role":"user","content":"\u8fdd\u7981\u8bcd"}]}`, false, "", "watchlist:flag"},
		{"escaped surrogates", chatRoute, `{"messages":[{"role":"user","content":"forbidden\u0020phrase \ud83d\ude00"}]}`, false, "", "watchlist:flag"},
		{"multi-part", chatRoute, `{"messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,违禁词"}},{"type":"text","text":"begin rsa private key"}]}]}`, true, "no-credentials", "no-credentials:reject"},
		{"media skipped", chatRoute, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/违禁词"}}]}]}`, false, "", ""},
		{"tool call arguments", chatRoute, `{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"q\":\"违禁词\"}"}}]}]}`, false, "", "watchlist:flag"},
		{"tool definitions", chatRoute, `{"messages":[{"role":"user","content":"hi"}],"tool_choice":"none","tools_x":1,"documents":[{"text":"forbidden phrase"}]}`, false, "", "watchlist:flag"},
		{"split across messages is two lines", chatRoute, `{"messages":[{"role":"user","content":"违禁"},{"role":"user","content":"词"}]}`, false, "", ""},
		{"exact field names", chatRoute, `{"Messages":[{"role":"user","content":"违禁词"}],"messages":[]}`, false, "", ""},
		{"stream", chatRoute, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"违禁词"}]}`, false, "", "watchlist:flag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := p.Check([]byte(tc.body), tc.route, 10, 100)
			if v.Rejected != tc.rejected || v.Rule != tc.rule || hits(v) != tc.hits {
				t.Fatalf("got rejected %v rule %q hits %q, want %v %q %q", v.Rejected, v.Rule, hits(v), tc.rejected, tc.rule, tc.hits)
			}
			if v.Rejected {
				if !strings.Contains(v.Message, `"`+tc.rule+`"`) {
					t.Errorf("message %q does not name the rule", v.Message)
				}
				for _, leak := range []string{"BEGIN", "begin", "RSA", "违禁词", "KEY"} {
					if strings.Contains(v.Message, leak) {
						t.Errorf("message %q quotes the prompt (%q)", v.Message, leak)
					}
				}
			}
			if v.Flagged() != strings.Contains(tc.hits, ":flag") {
				t.Errorf("Flagged() = %v for hits %q", v.Flagged(), tc.hits)
			}
		})
	}
}

// TestPolicyStreamingBodyRewritten: the body the guard forwards for a
// stream (include_usage added) reads the same.
func TestPolicyStreamingBodyRewritten(t *testing.T) {
	p := examplePolicy(t)
	body := []byte(`{"model":"glm-4.7-flash","stream":true,"messages":[{"role":"user","content":"BEGIN RSA PRIVATE KEY"}]}`)
	req, err := inspect(body, lookupRoute(chatRoute), inspectLimits{defaultMaxTokens: 1024, maxModelLen: 4096})
	if err != nil || !req.hideUsage {
		t.Fatalf("inspect: %+v %v", req, err)
	}
	for _, b := range [][]byte{body, req.body} {
		if v := p.Check(b, chatRoute, 10, 100); !v.Rejected || v.Rule != "no-credentials" {
			t.Fatalf("%s: %+v", b, v)
		}
	}
}

// TestPolicyUnicode: NFKC, ignorables and case folding make look-alike
// spellings match; CJK patterns work; patterns keep their own case rules.
func TestPolicyUnicode(t *testing.T) {
	p := mustPolicy(t, &config.Policy{Rules: []*config.PolicyRule{
		literalRule("abc", config.PolicyFlag, "abc"),
		literalRule("fullwidth-literal", config.PolicyFlag, "ＸＹＺ"),
		literalRule("cjk", config.PolicyFlag, "违禁词"),
		literalRule("ligature", config.PolicyFlag, "file"),
		literalRule("greek", config.PolicyFlag, "σοφία"),
		literalRule("kana", config.PolicyFlag, "カタカナ"),
		patternRule("case-sensitive", config.PolicyFlag, `SECRET`),
		patternRule("cjk-pattern", config.PolicyFlag, `禁止[一-龥]{2}`),
		patternRule("fullwidth-pattern", config.PolicyFlag, `Ｔｏｋｅｎ-\d+`),
	}})
	cases := []struct{ text, want string }{
		{"ＡＢＣ", "abc:flag"},                    // full-width
		{"aBc", "abc:flag"},                    // case
		{"a\u200bb\u200dc", "abc:flag"},        // zero-width space and joiner
		{"a\u00adbc", "abc:flag"},              // soft hyphen
		{"xyz", "fullwidth-literal:flag"},      // a full-width literal matches plain text
		{"违\u200b禁词", "cjk:flag"},              // ignorable inside CJK
		{"\ufb01le", "ligature:flag"},          // ﬁ ligature
		{"ΣΟΦΊΑ", "greek:flag"},                // Greek capitals (final sigma folds too)
		{"ｶﾀｶﾅ", "kana:flag"},                  // half-width katakana
		{"secret", ""},                         // pattern without (?i)
		{"SECRET", "case-sensitive:flag"},      //
		{"这里禁止吸烟", "cjk-pattern:flag"},         //
		{"token-42", ""},                       // pattern literal normalised, still case-sensitive
		{"Token-４２", "fullwidth-pattern:flag"}, // full-width digits read as digits
		{"①②③ abc", "abc:flag"},                // circled digits do not disturb
		{"a\u0301bc", ""},                      // á is not a
		{"\xff\xfeabc", "abc:flag"},            // invalid UTF-8 around
	}
	for _, tc := range cases {
		v := p.Check(chatRequest(tc.text), chatRoute, 1, 1)
		if got := hits(v); got != tc.want {
			t.Errorf("%q: hits %q, want %q", tc.text, got, tc.want)
		}
	}
}

// TestPolicyOverlappingRules: every rule that matches is found, whether
// its match overlaps, contains or lies inside another's.
func TestPolicyOverlappingRules(t *testing.T) {
	var rules []*config.PolicyRule
	for i, l := range []string{"abc", "bcd", "b", "abcdef", "cd", "xabcdefx"} {
		rules = append(rules, literalRule(fmt.Sprintf("r%d", i), config.PolicyFlag, l))
	}
	rules = append(rules, patternRule("re-a", config.PolicyFlag, `a.c`), patternRule("re-end", config.PolicyFlag, `f$`))
	p := mustPolicy(t, &config.Policy{Rules: rules})
	v := p.Check(chatRequest("abcdef"), chatRoute, 1, 1)
	if got, want := hits(v), "r0:flag,r1:flag,r2:flag,r3:flag,r4:flag,re-a:flag,re-end:flag"; got != want {
		t.Fatalf("hits %q, want %q", got, want)
	}
}

// TestPolicyDenyParams: a denied parameter is refused when it is turned on;
// off values, and n = 1, pass; names are exact.
func TestPolicyDenyParams(t *testing.T) {
	p := examplePolicy(t)
	cases := []struct {
		extra string
		param string
	}{
		{`"logprobs":true`, "logprobs"},
		{`"logprobs":5`, "logprobs"},
		{`"logprobs":false`, ""},
		{`"logprobs":null`, ""},
		{`"tools":[{"type":"function","function":{"name":"f"}}]`, "tools"},
		{`"tools":[ ]`, ""},
		{`"n":2`, "n"},
		{`"n":1`, ""},
		{`"Logprobs":true`, ""}, // vLLM ignores a name that is not exactly logprobs
		{`"logprob\u0073":true`, "logprobs"},
		{`"top_logprobs":3`, ""},
	}
	for _, tc := range cases {
		body := []byte(`{"model":"m",` + tc.extra + `,"messages":[{"role":"user","content":"hi"}]}`)
		v := p.Check(body, chatRoute, 1, 100)
		if tc.param == "" {
			if v.Rejected {
				t.Errorf("%s: rejected %+v", tc.extra, v)
			}
			continue
		}
		if !v.Rejected || v.Rule != config.PolicyDenyParams || v.Param != tc.param || !strings.Contains(v.Message, `"`+tc.param+`"`) {
			t.Errorf("%s: %+v", tc.extra, v)
		}
		if hits(v) != "deny_params:reject" {
			t.Errorf("%s: hits %q", tc.extra, hits(v))
		}
	}
}

// TestPolicyCaps: max_prompt_tokens and max_tokens as the guard computes
// them; a request without a bound is given the cap.
func TestPolicyCaps(t *testing.T) {
	p := examplePolicy(t)
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct {
		name, route, body string
		prompt, maxTokens int64
		rule, param       string
		inject            int64
	}{
		{"prompt over", chatRoute, `{` + msgs + `}`, 8001, 10, config.PolicyMaxPromptTokens, "messages", 0},
		{"prompt at cap", chatRoute, `{"max_tokens":10,` + msgs + `}`, 8000, 10, "", "", 0},
		{"max_tokens over", chatRoute, `{"max_tokens":2001,` + msgs + `}`, 1, 2001, config.PolicyMaxTokens, "max_tokens", 0},
		{"max_completion_tokens over", chatRoute, `{"max_completion_tokens":3000,"max_tokens":5,` + msgs + `}`, 1, 3000, config.PolicyMaxTokens, "max_completion_tokens", 0},
		{"at cap", chatRoute, `{"max_tokens":2000,` + msgs + `}`, 1, 2000, "", "", 0},
		{"chat without bound", chatRoute, `{` + msgs + `}`, 1, 4096, "", "", 2000},
		{"chat max_completion_tokens 0", chatRoute, `{"max_completion_tokens":0,` + msgs + `}`, 1, 4096, "", "", 2000},
		{"chat null", chatRoute, `{"max_tokens":null,` + msgs + `}`, 1, 4096, "", "", 2000},
		{"completions absent is 16", "/v1/completions", `{"prompt":"hi"}`, 1, 16, "", "", 0},
		{"completions null", "/v1/completions", `{"prompt":"hi","max_tokens":null}`, 1, 1024, "", "", 2000},
		{"completions over", "/v1/completions", `{"prompt":"hi","max_tokens":2500}`, 1, 2500, config.PolicyMaxTokens, "max_tokens", 0},
		{"embeddings: no bound needed", "/v1/embeddings", `{"input":"hi"}`, 1, 0, "", "", 0},
		{"embeddings prompt over", "/v1/embeddings", `{"input":"hi"}`, 9000, 0, config.PolicyMaxPromptTokens, "input", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := p.Check([]byte(tc.body), tc.route, tc.prompt, tc.maxTokens)
			if v.Rejected != (tc.rule != "") || v.Rule != tc.rule || v.Param != tc.param || v.MaxTokens != tc.inject {
				t.Fatalf("got %+v, want rule %q param %q inject %d", v, tc.rule, tc.param, tc.inject)
			}
			if v.Rejected && (!strings.Contains(v.Message, `"`+tc.rule+`"`) || hits(v) != tc.rule+":reject") {
				t.Fatalf("message %q hits %q", v.Message, hits(v))
			}
		})
	}
}

// TestWithMaxTokens: the cap is written into the forwarded body, which the
// guard then reads as bounded.
func TestWithMaxTokens(t *testing.T) {
	lim := inspectLimits{defaultMaxTokens: 1024, maxModelLen: 1 << 20}
	for _, body := range []string{
		`{"messages":[{"role":"user","content":"hi"}]}`,
		` { "max_tokens" : null , "messages":[]}`,
		`{"max_completion_tokens":0,"messages":[{"role":"user","content":"\"max_tokens\":1"}]}`,
		`{}`,
	} {
		out := withMaxTokens([]byte(body), 2000)
		if !json.Valid(out) {
			t.Fatalf("%s → invalid %s", body, out)
		}
		req, err := inspect(out, lookupRoute(chatRoute), lim)
		var v struct{ Messages json.RawMessage }
		_ = json.Unmarshal(out, &v)
		if err != nil || req.reserve != 2000+estimateTokens(int64(len(v.Messages))) {
			t.Fatalf("%s → %s: reserve %d, %v", body, out, req.reserve, err)
		}
		var m map[string]any
		_ = json.Unmarshal(out, &m)
		if m["max_tokens"] != float64(2000) {
			t.Fatalf("%s → %s", body, out)
		}
		p := examplePolicy(t)
		if v := p.Check(out, chatRoute, 1, 2000); v.MaxTokens != 0 || v.Rejected {
			t.Fatalf("rewritten body still unbounded: %+v", v)
		}
	}
}

// TestPolicyUnreadable: what the rules cannot read is treated as a match:
// rejected when any rule rejects, flagged otherwise; a malformed body is
// rejected whenever the policy looks into bodies.
func TestPolicyUnreadable(t *testing.T) {
	rejecting := examplePolicy(t)
	flagging := mustPolicy(t, &config.Policy{Rules: []*config.PolicyRule{literalRule("w", config.PolicyFlag, "x")}})
	capsOnly := mustPolicy(t, &config.Policy{MaxPromptTokens: 100})
	for _, body := range []string{
		`{"prompt":[1,2,3]}`, `{"prompt":[[1,2],[3]]}`, `{"input":[101, 102]}`, `{"prompt":"x","prompt_embeds":"AAAA"}`,
	} {
		v := rejecting.Check([]byte(body), "/v1/completions", 1, 16)
		if !v.Rejected || v.Rule != config.PolicyUnreadable || strings.Contains(v.Message, "AAAA") {
			t.Errorf("%s: %+v", body, v)
		}
		v = flagging.Check([]byte(body), "/v1/completions", 1, 16)
		if v.Rejected || !strings.HasPrefix(hits(v), "unreadable:flag") {
			t.Errorf("%s (flag rules): %+v", body, v)
		}
	}
	if v := rejecting.Check([]byte(`{"prompt":"x","prompt_embeds":null}`), "/v1/completions", 1, 16); v.Rejected || v.Hits != nil {
		t.Errorf("null prompt_embeds: %+v", v)
	}
	malformed := []string{``, `[]`, `"x"`, `{`, `{"messages":[{"role":"user","content":"hi"}]`, `{"a":1}x`, `{"a":}`,
		`{"messages":"unterminated}`, `{"a":1,}`, `{"messages":[{"content":"\x"}]}`, `{"messages":[{"content":"\u12"}]}`, `{"a" 1}`,
		`{"messages":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`}
	for _, body := range malformed {
		for _, p := range []*Policy{rejecting, flagging} {
			v := p.Check([]byte(body), chatRoute, 1, 1)
			if !v.Rejected || v.Rule != config.PolicyUnreadable {
				t.Errorf("%q: %+v", body, v)
			}
		}
		if v := capsOnly.Check([]byte(body), chatRoute, 1, 1); v.Rejected {
			t.Errorf("caps-only policy read the body %q: %+v", body, v)
		}
	}
	deep := `{"messages":[{"role":"user","content":` + strings.Repeat("[", 100) + `"x"` + strings.Repeat("]", 100) + `}]}`
	if v := flagging.Check([]byte(deep), chatRoute, 1, 1); !strings.Contains(hits(v), "unreadable:flag") {
		t.Errorf("deep nesting: %+v", v)
	}
}

// TestPolicyNeverPanics: random and cut bodies never panic.
func TestPolicyNeverPanics(t *testing.T) {
	p := examplePolicy(t)
	seed := chatRequest(`违禁词 "quoted" \ back \u1234 BEGIN RSA PRIVATE KEY`)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		b := append([]byte{}, seed[:rng.IntN(len(seed)+1)]...)
		for range rng.IntN(4) {
			if len(b) > 0 {
				b[rng.IntN(len(b))] = byte(rng.IntN(256))
			}
		}
		if i%2 == 0 {
			b = append(b, seed[rng.IntN(len(seed)):]...)
		}
		_ = p.Check(b, chatRoute, 1, 1)
		_ = withMaxTokens(b, 5)
	}
}

// TestPolicyOversized: a body of several MiB is read to its end.
func TestPolicyOversized(t *testing.T) {
	p := examplePolicy(t)
	big := strings.Repeat("lorem ipsum dolor sit amet 中文内容 ", 4<<20/40)
	v := p.Check(chatRequest(big+"违禁词"), chatRoute, 1, 1)
	if hits(v) != "watchlist:flag" {
		t.Fatalf("hits %q", hits(v))
	}
}

// TestPolicyBacktracking: patterns that backtracking engines take
// exponential time on are linear here (the time is BenchmarkPolicy's).
func TestPolicyBacktracking(t *testing.T) {
	p := mustPolicy(t, &config.Policy{Rules: []*config.PolicyRule{
		patternRule("nested", config.PolicyReject, `(a+)+$`),
		patternRule("alt", config.PolicyReject, `^(a|aa)+$`),
		patternRule("evil", config.PolicyReject, `(x+x+)+y`),
	}})
	text := strings.Repeat("a", 1<<16) + "b" + strings.Repeat("x", 1<<16)
	if v := p.Check(chatRequest(text), chatRoute, 1, 1); len(v.Hits) != 0 {
		t.Fatalf("hits %q", hits(v))
	}
	if v := p.Check(chatRequest(strings.Repeat("a", 1<<16)), chatRoute, 1, 1); hits(v) != "nested:reject" {
		t.Fatalf("hits %q", hits(v))
	}
}

// TestPolicyOverride: a key's override only tightens; keys without one
// share the policy.
func TestPolicyOverride(t *testing.T) {
	p := examplePolicy(t)
	if p.WithOverride(nil) != p || p.WithOverride(&keys.PolicyOverride{MaxTokens: 5000, DenyParams: []string{"tools"}}) != p {
		t.Fatal("an override that adds nothing made a copy")
	}
	q := p.WithOverride(&keys.PolicyOverride{MaxTokens: 500, MaxPromptTokens: 9000, DenyParams: []string{"response_format"}})
	msgs := `"messages":[{"role":"user","content":"违禁词"}]`
	if v := q.Check([]byte(`{"max_tokens":600,`+msgs+`}`), chatRoute, 1, 600); v.Rule != config.PolicyMaxTokens || !strings.Contains(v.Message, "500") {
		t.Errorf("tightened max_tokens: %+v", v)
	}
	if v := q.Check([]byte(`{`+msgs+`}`), chatRoute, 8500, 1024); v.Rule != config.PolicyMaxPromptTokens {
		t.Errorf("loosened max_prompt_tokens: %+v", v)
	}
	if v := q.Check([]byte(`{"response_format":{"type":"json_object"},`+msgs+`}`), chatRoute, 1, 1); v.Param != "response_format" {
		t.Errorf("added deny_params: %+v", v)
	}
	if v := q.Check([]byte(`{"logprobs":true,`+msgs+`}`), chatRoute, 1, 1); v.Param != "logprobs" {
		t.Errorf("global deny_params lost: %+v", v)
	}
	if v := q.Check([]byte(`{`+msgs+`}`), chatRoute, 1, 1); v.MaxTokens != 500 || hits(v) != "watchlist:flag" {
		t.Errorf("rules or injected cap: %+v", v)
	}
	if v := p.Check([]byte(`{"max_tokens":600,"response_format":{"type":"json_object"},`+msgs+`}`), chatRoute, 1, 600); v.Rejected {
		t.Errorf("the override changed the shared policy: %+v", v)
	}
	var none *Policy
	k := none.WithOverride(&keys.PolicyOverride{MaxTokens: 100, DenyParams: []string{"tools"}})
	if v := k.Check([]byte(`{"max_tokens":101,"messages":[]}`), chatRoute, 1, 101); v.Rule != config.PolicyMaxTokens {
		t.Errorf("override without a policy block: %+v", v)
	}
	if v := k.Check([]byte(`{"tools":[{}],"messages":[]}`), chatRoute, 1, 10); v.Rule != config.PolicyDenyParams {
		t.Errorf("override without a policy block: %+v", v)
	}
}

// TestCompilePolicyErrors: invalid rules are errors naming them.
func TestCompilePolicyErrors(t *testing.T) {
	cases := []struct {
		rule *config.PolicyRule
		want string
	}{
		{patternRule("bad", config.PolicyReject, `(unclosed`), `policy rule "bad": invalid pattern`},
		{patternRule("empty", config.PolicyReject, `x*`), `policy rule "empty": matches an empty prompt`},
		{literalRule("blank", config.PolicyFlag, "\u200b"), `policy rule "blank": literal 1 is empty once normalised`},
		{literalRule("act", "block", "x"), `policy rule "act": action "block"`},
		{&config.PolicyRule{Name: "none", Action: config.PolicyFlag}, `policy rule "none": the rule has neither`},
		{literalRule("max_tokens", config.PolicyFlag, "x"), `reserved`},
	}
	for _, tc := range cases {
		_, err := CompilePolicy(&config.Policy{Rules: []*config.PolicyRule{tc.rule}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.rule, err, tc.want)
		}
	}
	_, err := CompilePolicy(&config.Policy{Rules: []*config.PolicyRule{literalRule("a", config.PolicyFlag, "x"), literalRule("a", config.PolicyFlag, "y")}})
	if err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate: %v", err)
	}
}

// TestCompilePolicyErrorsPlaced: what only compiling the rules finds — an
// automaton past its bound, a pattern that normalises to nothing — is
// placed at the rule that caused it, with the rule's FILE:LINE:COL, the
// same text at load, at reload and in `glmctl check`.
func TestCompilePolicyErrorsPlaced(t *testing.T) {
	small := patternRule("small", config.PolicyFlag, `secret`)
	small.At = "glmctl.hcl:8:15"
	big := patternRule("big", config.PolicyReject, `[\p{L}\p{N}]{1000}x{1,1000}`)
	big.At = "glmctl.hcl:12:15"
	_, err := CompilePolicy(&config.Policy{Rules: []*config.PolicyRule{small, big}})
	if err == nil || !errors.Is(err, errPolicyTooLarge) ||
		!strings.HasPrefix(err.Error(), `glmctl.hcl:12:15: policy rule "big": with this rule the policy's patterns need more than`) {
		t.Errorf("too large: %v", err)
	}
	zw := patternRule("zw", config.PolicyFlag, `\x{200b}`)
	zw.At = "glmctl.hcl:3:5"
	if _, err := CompilePolicy(&config.Policy{Rules: []*config.PolicyRule{small, zw}}); err == nil ||
		!strings.HasPrefix(err.Error(), `glmctl.hcl:3:5: policy rule "zw": matches an empty prompt once its text is normalised`) {
		t.Errorf("empty once normalised: %v", err)
	}
}

// TestPolicyFromConfig: the design's policy block, as the config package
// decodes it, compiles and behaves as documented.
func TestPolicyFromConfig(t *testing.T) {
	cfg, err := config.Load("../../testdata/valid-design.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p := mustPolicy(t, cfg.Policy)
	if p.Rules() != 2 || !reflect.DeepEqual(p.RuleNames()[4:], []string{"no-credentials", "watchlist"}) {
		t.Fatalf("rules %d %v", p.Rules(), p.RuleNames())
	}
	v := p.Check(chatRequest("违禁词"), chatRoute, 10, 100)
	if !reflect.DeepEqual(v.Hits, []audit.PolicyHit{{Rule: "watchlist", Action: "flag"}}) || v.MaxTokens != 2000 {
		t.Fatalf("%+v", v)
	}
}

// TestPolicyConcurrent: many goroutines share one policy, with a cache
// budget small enough to be replaced while they scan (run with -race).
func TestPolicyConcurrent(t *testing.T) {
	p := examplePolicy(t)
	p.core.dfa.budget = 4 << 10
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 300 {
				var b strings.Builder
				for range 50 {
					b.WriteString([]string{"违禁", "词", "forbidden ", "phrase ", "4111 ", "BEGIN RSA ", "PRIVATE KEY ", "x"}[rng.IntN(8)])
				}
				text := b.String()
				v := p.Check(chatRequest(text), chatRoute, 1, 1)
				want := strings.Contains(text, "违禁词") || strings.Contains(text, "forbidden phrase")
				if strings.Contains(hits(v), "watchlist") != want {
					t.Errorf("%q: hits %q", text, hits(v))
					return
				}
			}
		}()
	}
	wg.Wait()
}
