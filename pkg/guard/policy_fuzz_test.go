package guard

import (
	"bytes"
	"encoding/json"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/glmctl/glmctl/internal/config"
)

// FuzzPolicy: over any body and rule set, Check never panics; a literal
// that appears in a message's content is always found; the fast
// normalisation equals x/text's; and the automaton decides every literal
// and pattern rule exactly as Go's regexp does on the text it scanned.
func FuzzPolicy(f *testing.F) {
	f.Add([]byte(chatRequest("违禁词")), "违禁词", `(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY`, "x BEGIN rsa PRIVATE KEY y", uint8(0))
	f.Add([]byte(`{"prompt":[1,2,3]}`), "ＡＢＣ", `(a+)+$`, "aaaaaaaaab", uint8(1))
	f.Add([]byte(`{"input":["a\u200bb"],"n":2}`), "ab", `\bfoo\b|(?m)^bar$`, "foo\nbar", uint8(2))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"ﬁle"}]}]}`), "file", `[\p{Han}]{2}`, "ｶﾞ\u0301é", uint8(0))
	f.Add([]byte(`{"messages":"`), "σ", `(?i)Σ`, "ς\xff", uint8(3))
	routes := []string{chatRoute, "/v1/completions", "/v1/embeddings", "/tokenize"}
	fixed := []*config.PolicyRule{
		patternRule("cred", config.PolicyReject, `(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY`),
		literalRule("cjk", config.PolicyFlag, "违禁词", "敏感"),
	}
	f.Fuzz(func(t *testing.T, body []byte, lit, pat, text string, route uint8) {
		if len(body) > 1<<16 || len(text) > 1<<12 || len(pat) > 200 || len(lit) > 100 {
			return
		}
		if !utf8.ValidString(lit) || !utf8.ValidString(text) {
			// Config text is valid UTF-8; invalid bytes in a body are read
			// as U+FFFD, which json.Marshal (building the request below)
			// writes once per byte where normalisation writes it once.
			lit, text = strings.ToValidUTF8(lit, "\uFFFD"), strings.ToValidUTF8(text, "\uFFFD")
		}
		rules := append([]*config.PolicyRule{}, fixed...)
		litIdx, patIdx := -1, -1
		if normalizeString(lit) != "" {
			litIdx = len(rules)
			rules = append(rules, literalRule("lit", config.PolicyFlag, lit))
		}
		var goRe *regexp.Regexp
		if re, err := syntax.Parse(pat, syntax.Perl); err == nil && pat != "" {
			normalizeLiterals(re)
			if rx, err := regexp.Compile(re.String()); err == nil && !rx.MatchString("") {
				goRe = rx
				patIdx = len(rules)
				rules = append(rules, patternRule("pat", config.PolicyReject, pat))
			}
		}
		p, err := CompilePolicy(&config.Policy{MaxTokens: 100, DenyParams: []string{"n", "tools"}, Rules: rules})
		if err != nil {
			if patIdx >= 0 && strings.Contains(err.Error(), `"pat"`) {
				return // too large for the automaton, or empty once normalised
			}
			t.Fatalf("compile: %v", err)
		}
		rt := routes[int(route)%len(routes)]
		_ = p.Check(body, rt, 1, 1) // never panics
		_ = withMaxTokens(body, 7)

		// Normalisation: the fast path agrees with x/text.
		if got, want := appendNormalized(nil, []byte(text)), appendNormalizedSlow(nil, []byte(text)); !bytes.Equal(got, want) {
			t.Fatalf("normalise %q: fast %q, x/text %q", text, got, want)
		}

		// The look-alike skeleton changes letters one for one, and only
		// when a word mixes Latin letters and look-alikes.
		if skel, mixed := appendSkeleton(nil, []byte(text)); mixed {
			if utf8.RuneCount(skel) != utf8.RuneCountInString(text) || bytes.Equal(skel, []byte(text)) {
				t.Fatalf("skeleton of %q: %q", text, skel)
			}
		}

		// A message holding the literal finds it (unless normalisation
		// merges it with its neighbours, e.g. a leading combining mark).
		content := text + " " + lit + " " + text
		v := p.Check(chatRequest(content), chatRoute, 1, 1)
		nc, nl := string(appendNormalizedSlow(nil, []byte(content))), normalizeString(lit)
		if litIdx >= 0 && strings.Contains(nc, nl) && !strings.Contains(hits(v), "lit:flag") {
			t.Fatalf("literal %q not found in %q (hits %q)", lit, content, hits(v))
		}

		// The automaton against Go's regexp, rule by rule, on the scanned text.
		sc := &bodyScan{collect: true}
		sc.readBody(chatRequest(content), nil)
		if sc.facts.malformed {
			t.Fatalf("chatRequest(%q) is malformed", content)
		}
		found := make([]bool, len(rules))
		p.core.dfa.scan(sc.text, found)
		if litIdx >= 0 {
			want := regexp.MustCompile(`(?i)` + regexp.QuoteMeta(nl)).Match(sc.text)
			if found[litIdx] != want {
				t.Fatalf("literal %q on %q: automaton %v, regexp %v", nl, sc.text, found[litIdx], want)
			}
		}
		if patIdx >= 0 {
			if want := goRe.Match(sc.text); found[patIdx] != want {
				t.Fatalf("pattern %q on %q: automaton %v, regexp %v", goRe, sc.text, found[patIdx], want)
			}
		}
	})
}

// FuzzPolicyBody: on valid JSON the body reader collects exactly the
// strings a reference walk with encoding/json's tokenizer collects (same
// fields, same skipped keys, escapes decoded), finds token IDs and denied
// parameters as it does, and never calls a valid body malformed.
func FuzzPolicyBody(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"user","content":"a\"b\\c\u00e9\ud83d\ude00\ud800"}],"n":2}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"u"}}]}],"logprobs":true,"n":1}`))
	f.Add([]byte(` {"messages" : [ {"content" : "\/\b\f\n\r\t"} ] , "logprobs":null, "prompt":[1,"a"], "tools":[] } `))
	f.Add([]byte(`{"input":[[1,2]],"documents":[{"title":"t","text":"d"}],"logprob\u0073":{}}`))
	deny := []string{"logprobs", "n", "tools"}
	f.Fuzz(func(t *testing.T, body []byte) {
		sc := &bodyScan{collect: true}
		sc.readBody(body, deny)
		if !json.Valid(body) || !utf8.Valid(body) {
			return
		}
		if sc.facts.malformed != (skipSpaceBytes(body)[0] != '{') {
			t.Fatalf("malformed = %v for %s", sc.facts.malformed, body)
		}
		if sc.facts.malformed {
			return
		}
		want, tokens, denied, deep := referenceWalk(t, body, deny)
		if deep {
			return
		}
		if got := string(sc.text); got != want {
			t.Fatalf("text %q, reference %q, body %s", got, want, body)
		}
		if (sc.facts.unreadable == "token IDs") != tokens {
			t.Fatalf("unreadable %q, reference token IDs %v: %s", sc.facts.unreadable, tokens, body)
		}
		if (sc.facts.denied != "") != denied {
			t.Fatalf("denied %q, reference %v: %s", sc.facts.denied, denied, body)
		}
	})
}

func skipSpaceBytes(b []byte) []byte { return bytes.TrimLeft(b, " \t\r\n") }

// referenceWalk collects the prompt text of a valid JSON object body with
// encoding/json's tokenizer: deep is true when it nests beyond what the
// reader collects from.
func referenceWalk(t *testing.T, body []byte, deny []string) (text string, tokens, denied, deep bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var parts []string
	var walk func(dec *json.Decoder, collect, tok bool, depth int)
	walk = func(dec *json.Decoder, collect, tok bool, depth int) {
		if depth > maxCollectDepth && collect {
			deep = true
		}
		v, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch v := v.(type) {
		case string:
			if collect {
				parts = append(parts, string(appendNormalizedSlow(nil, []byte(v))))
			}
		case json.Number:
			tokens = tokens || collect && tok
		case json.Delim:
			switch v {
			case '[':
				for dec.More() {
					walk(dec, collect, tok, depth+1)
				}
			case '{':
				for dec.More() {
					k, _ := dec.Token()
					walk(dec, collect && !skippedKey([]byte(k.(string))), tok, depth+1)
				}
			}
			_, _ = dec.Token() // the closing delimiter
		}
	}
	if d, _ := dec.Token(); d != json.Delim('{') {
		t.Fatal("not an object")
	}
	for dec.More() {
		k, _ := dec.Token()
		name := k.(string)
		scan, tok := promptField([]byte(name))
		if slices.Contains(deny, name) {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			var c bytes.Buffer
			_ = json.Compact(&c, raw)
			off := c.String() == "null" || c.String() == "false" || c.String() == "[]" || c.String() == "{}" ||
				(name == "n" && string(raw) == "1")
			denied = denied || !off
			if scan { // a denied parameter that is also prompt input: its text counts too
				inner := json.NewDecoder(bytes.NewReader(raw))
				inner.UseNumber()
				walk(inner, scan, tok, 0)
			}
			continue
		}
		walk(dec, scan, tok, 0)
	}
	return strings.Join(parts, "\n"), tokens, denied, deep
}
