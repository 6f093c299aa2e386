package config

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// policy decodes the policy block, if there is one.
func (d *decoder) policy(top *section) *Policy {
	b := top.block("policy")
	if b == nil {
		return nil
	}
	s := top.child(b, "policy")
	d.policyBlock = b.TypeRange
	p := &Policy{}
	s.integer("max_prompt_tokens", &p.MaxPromptTokens, 1)
	s.integer("max_tokens", &p.MaxTokens, 1)
	if rngs, ok := s.strList("deny_params", &p.DenyParams); ok {
		first := map[string]hcl.Range{}
		for i, name := range p.DenyParams {
			if at, dup := first[name]; dup {
				s.c.at(rngs[i], "deny_params lists %q twice (first at %s): list each parameter once", name, pos(s.c.filename, at))
				continue
			}
			first[name] = rngs[i]
			if msg := CheckDenyParam(name); msg != "" {
				s.c.at(rngs[i], "%s", msg)
			} else if !knownParam(name) {
				d.warn.at(rngs[i], "deny_params names %q, which is not a request parameter glmctl knows: check the spelling (names are matched exactly, as vLLM matches them)", name)
			}
		}
	}
	seen := map[string]hcl.Range{}
	for _, rb := range s.labelled("rule") {
		name, rng := rb.Labels[0], rb.LabelRanges[0]
		if at, dup := seen[name]; dup {
			s.c.at(rng, "duplicate policy rule %q: the first is at %s; rename or remove one of them", name, pos(s.c.filename, at))
			continue
		}
		seen[name] = rng
		if msg := checkRuleName(name); msg != "" {
			s.c.at(rng, "%s", msg)
		}
		p.Rules = append(p.Rules, d.policyRule(s.child(rb, fmt.Sprintf("policy rule %q", name)), rb.Body.Attributes, rb.TypeRange, name))
	}
	s.finish(nil)
	return p
}

func (d *decoder) policyRule(s *section, attrs map[string]*hclsyntax.Attribute, typeRange hcl.Range, name string) *PolicyRule {
	r := &PolicyRule{Name: name, At: pos(s.c.filename, typeRange)}
	if s.str("pattern", &r.Pattern) {
		rng := attrs["pattern"].Expr.Range()
		r.At = pos(s.c.filename, rng)
		switch re, err := syntax.Parse(r.Pattern, syntax.Perl); {
		case r.Pattern == "":
			s.c.at(rng, "pattern in rule %q must not be empty: write an RE2 expression such as \"(?i)secret\"", name)
		case err != nil:
			s.c.at(rng, "invalid pattern in rule %q: %s", name, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		case matchesEmpty(re):
			s.c.at(rng, "pattern in rule %q matches an empty prompt, so it would match every request: make it require some text", name)
		}
	}
	if rngs, ok := s.strList("literal", &r.Literal); ok {
		if len(r.Literal) == 0 {
			s.c.at(attrs["literal"].Expr.Range(), "literal in rule %q lists nothing: write literal = [\"text\"] or remove it", name)
		}
		for i, l := range r.Literal {
			if strings.TrimFunc(l, invisible) == "" {
				s.c.at(rngs[i], "literal %d of rule %q is blank (spaces or invisible characters only), so it would match almost every request: remove it", i+1, name)
			}
		}
	}
	if s.missing("pattern") && s.missing("literal") {
		s.c.at(typeRange, "rule %q needs pattern = \"RE2\" or literal = [\"text\", …] (or both)", name)
	}
	s.enum("action", &r.Action, PolicyReject, PolicyFlag)
	if s.missing("action") {
		s.c.at(typeRange, "rule %q needs an action: write action = %q (400 naming the rule) or action = %q (served, marked in the audit record)", name, PolicyReject, PolicyFlag)
	}
	s.finish(nil)
	return r
}

// invisible reports characters a literal cannot consist of alone: spaces,
// and what the guard removes before matching (zero-width and other format
// characters, variation selectors, default-ignorable fillers).
func invisible(r rune) bool {
	return unicode.IsSpace(r) || unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

// matchesEmpty reports whether re matches the empty text.
func matchesEmpty(re *syntax.Regexp) bool {
	rx, err := regexp.Compile(re.String())
	return err == nil && rx.MatchString("")
}

// checkRuleName returns what is wrong with a policy rule name, or "": rule
// names are metric label values and audit fields.
func checkRuleName(name string) string {
	switch name {
	case PolicyMaxPromptTokens, PolicyMaxTokens, PolicyDenyParams, PolicyUnreadable:
		return fmt.Sprintf("policy rule name %q is reserved for the built-in check of that name: choose another name", name)
	}
	if len(name) > 64 || !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`).MatchString(name) {
		return fmt.Sprintf("invalid policy rule name %q: use at most 64 letters, digits, \".\", \"_\" and \"-\", starting with a letter or digit", name)
	}
	return ""
}

// CheckDenyParam returns what is wrong with a deny_params entry (config or
// keys file), or "".
func CheckDenyParam(name string) string {
	switch name {
	case "model", "messages", "prompt", "input":
		return fmt.Sprintf("deny_params cannot refuse %q: no request does without it; refuse the route or the model instead", name)
	case "max_tokens", "max_completion_tokens":
		return fmt.Sprintf("deny_params cannot refuse %q: cap it with max_tokens = N instead", name)
	}
	if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(name) {
		return fmt.Sprintf("invalid deny_params entry %q: write a top-level request parameter such as \"logprobs\" or \"tools\"", name)
	}
	return ""
}

// knownParam reports whether name is a request parameter of OpenAI's or
// vLLM's chat, completions or embeddings APIs.
func knownParam(name string) bool {
	for _, p := range strings.Fields(`
		audio best_of chat_template chat_template_kwargs continue_final_message dimensions documents echo
		encoding_format frequency_penalty function_call functions guided_choice guided_decoding_backend
		guided_grammar guided_json guided_regex guided_whitespace_pattern ignore_eos include_reasoning
		include_stop_str_in_output length_penalty logit_bias logits_processors logprobs metadata min_p
		min_tokens mm_processor_kwargs modalities n parallel_tool_calls prediction presence_penalty
		priority prompt_embeds prompt_logprobs reasoning_effort repetition_penalty response_format
		return_token_ids return_tokens_as_token_ids seed service_tier skip_special_tokens
		spaces_between_special_tokens stop stop_token_ids store stream stream_options structural_tag
		structured_outputs suffix temperature tool_choice tools top_k top_logprobs top_p
		truncate_prompt_tokens use_beam_search user vllm_xargs allowed_token_ids bad_words
		add_generation_prompt add_special_tokens cache_salt kv_transfer_params request_id thinking`) {
		if p == name {
			return true
		}
	}
	return false
}
