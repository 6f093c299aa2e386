package guard

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"slices"
	"strconv"
	"sync"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// The request policy (issue 14): what a key may ask for, beyond who may ask
// and how often. It is compiled once per reload from the config's policy
// block (CompilePolicy), narrowed per key by the keys file's "policy"
// objects (WithOverride), and checked once per request (Check) on the body
// the guard has already read, with the figures it has already computed.
//
// Semantics:
//
//   - max_prompt_tokens caps the guard's prompt estimate (prompt bytes ÷ 4,
//     as it reserves tokens); more is a reject.
//   - max_tokens caps what a generating request may ask for per choice
//     (chat: max_completion_tokens or max_tokens, completions: max_tokens).
//     More is a reject. A request that names no bound (chat without either,
//     or with max_completion_tokens 0; completions with max_tokens null)
//     would let the model run to its context length, so it is served with
//     max_tokens set to the cap (Verdict.MaxTokens, withMaxTokens).
//   - deny_params refuses a top-level parameter turned on: any value but
//     absent, null, false, [] or {}; for n and best_of anything but 1 — so
//     deny_params = ["n"] means "no n > 1". Names are matched byte for byte.
//   - rules match the prompt text: every string of messages (content, text
//     parts, names, tool calls; not media or ids), prompt, input, suffix,
//     documents, tools, chat_template and chat_template_kwargs, decoded from
//     JSON, each NFKC-normalised with default-ignorable characters removed,
//     joined by newlines. Literals match case-insensitively (Unicode simple
//     folding); patterns are RE2, case-sensitive unless they say (?i), over
//     the same normalised text, so they should be written in NFKC form
//     (their literal parts are normalised for them). Every rule that
//     matches is reported; the first reject rule (in config order) names
//     the 400.
//     Normalisation catches compatibility spellings (full-width, half-width,
//     ligatures, circled and styled letters) and invisible characters slipped
//     between letters. A word that mixes Latin letters with Cyrillic or
//     Greek look-alikes of them ("pаssword" with a Cyrillic а) is also read
//     as the Latin word it imitates (appendSkeleton: every rule runs over
//     that reading too); a word wholly in another script is left alone.
//     It does not fold ß to ss or join a word split across strings: a
//     content filter catches what is written, not every obfuscation.
//   - what cannot be read is treated as if it matched: a prompt given as
//     token IDs or embeddings is "unreadable" (rejected when any rule
//     rejects, else flagged), and a body this reader cannot walk is
//     rejected as "unreadable" whenever the policy has anything to check in
//     it (the guard refuses invalid JSON before this anyway).
//   - a key's override only tightens: the lower of each cap, the union of
//     the denied parameters. A key cannot loosen the config's policy; give
//     the config the loosest caps and the keys their own.
//
// The policy applies to every key, admins included; the guard checks it on
// the routes that carry a prompt.

// Policy is a compiled request policy, immutable and safe for concurrent
// use. A nil *Policy is "no policy": Check allows everything.
type Policy struct {
	maxPrompt int64 // 0: no cap
	maxTokens int64 // 0: no cap
	deny      []string
	core      *policyCore // nil: no rules
}

// policyCore is the compiled rule set, shared by a policy and its per-key
// variants.
type policyCore struct {
	rules     []policyRule
	dfa       *dfa
	anyReject bool
	scans     sync.Pool // *policyScan
}

type policyRule struct {
	name   string
	reject bool
}

// policyScan is the scratch of one Check.
type policyScan struct {
	body  bodyScan
	found []bool
	skel  []byte // the text with its mixed-script words' look-alikes read as Latin (appendSkeleton)
}

// Verdict is the policy's decision on one request.
type Verdict struct {
	// Rejected: answer 400 (invalid_request_error) with Message, naming
	// Param; Rule is the rule or check that refused it.
	Rejected bool
	Rule     string
	Param    string
	Message  string
	// MaxTokens > 0: the request names no completion bound; forward it
	// with max_tokens set to this (withMaxTokens) and reserve it.
	MaxTokens int64
	// Hits is every decision, in policy order (built-in checks first, then
	// rules in config order): the audit record's policy field, and one
	// count each for glmctl_guard_policy_decisions_total{rule,action}.
	Hits []audit.PolicyHit
}

// Flagged reports whether a rule flagged the request.
func (v *Verdict) Flagged() bool {
	for _, h := range v.Hits {
		if h.Action == audit.PolicyFlag {
			return true
		}
	}
	return false
}

// CompilePolicy compiles the config's policy block (nil: no policy, a nil
// *Policy). An invalid rule is an error naming it.
func CompilePolicy(cfg *config.Policy) (*Policy, error) {
	if cfg == nil {
		return nil, nil
	}
	if cfg.MaxPromptTokens < 0 || cfg.MaxTokens < 0 {
		return nil, errors.New("policy: caps must not be negative")
	}
	p := &Policy{maxPrompt: int64(cfg.MaxPromptTokens), maxTokens: int64(cfg.MaxTokens)}
	for _, d := range cfg.DenyParams {
		if msg := config.CheckDenyParam(d); msg != "" {
			return nil, fmt.Errorf("policy: %s", msg)
		}
		if !slices.Contains(p.deny, d) {
			p.deny = append(p.deny, d)
		}
	}
	if len(cfg.Rules) == 0 {
		return p, nil
	}
	core := &policyCore{}
	res := make([]*syntax.Regexp, 0, len(cfg.Rules))
	for _, r := range cfg.Rules {
		re, err := ruleRegexp(r)
		if err != nil {
			return nil, ruleError(r, err)
		}
		if slices.ContainsFunc(core.rules, func(x policyRule) bool { return x.name == r.Name }) {
			return nil, ruleError(r, errors.New("defined twice"))
		}
		switch r.Name {
		case config.PolicyMaxPromptTokens, config.PolicyMaxTokens, config.PolicyDenyParams, config.PolicyUnreadable:
			return nil, ruleError(r, errors.New("the name is reserved for a built-in check"))
		}
		core.rules = append(core.rules, policyRule{name: r.Name, reject: r.Action == config.PolicyReject})
		core.anyReject = core.anyReject || r.Action == config.PolicyReject
		res = append(res, re)
	}
	insts, start, err := compileSet(res)
	if err != nil {
		var tl *tooLargeError
		if errors.As(err, &tl) {
			return nil, ruleError(cfg.Rules[tl.rule], err)
		}
		return nil, err
	}
	core.dfa = newDFA(insts, start, len(res))
	found := make([]bool, len(res))
	core.dfa.scan(nil, found)
	if i := slices.Index(found, true); i >= 0 {
		return nil, ruleError(cfg.Rules[i], errors.New("matches an empty prompt once its text is normalised "+
			"(NFKC, invisible characters removed), so it would match every request: make it require visible text"))
	}
	core.scans.New = func() any { return &policyScan{found: make([]bool, len(res))} }
	p.core = core
	return p, nil
}

// ruleError places err at the rule: "FILE:LINE:COL: policy rule "NAME": …".
func ruleError(r *config.PolicyRule, err error) error {
	if r.At == "" {
		return fmt.Errorf("policy rule %q: %w", r.Name, err)
	}
	return fmt.Errorf("%s: policy rule %q: %w", r.At, r.Name, err)
}

// ruleRegexp is one rule as one expression: its literals (normalised,
// case-folded) and its pattern (its literal parts normalised) as
// alternatives.
func ruleRegexp(r *config.PolicyRule) (*syntax.Regexp, error) {
	if r.Action != config.PolicyReject && r.Action != config.PolicyFlag {
		return nil, fmt.Errorf("action %q is not %q or %q", r.Action, config.PolicyReject, config.PolicyFlag)
	}
	var alts []*syntax.Regexp
	for i, l := range r.Literal {
		n := normalizeString(l)
		if n == "" {
			return nil, fmt.Errorf("literal %d is empty once normalised", i+1)
		}
		alts = append(alts, &syntax.Regexp{Op: syntax.OpLiteral, Rune: []rune(n), Flags: syntax.FoldCase})
	}
	if r.Pattern != "" {
		re, err := syntax.Parse(r.Pattern, syntax.Perl)
		if err != nil {
			return nil, fmt.Errorf("invalid pattern: %w", err)
		}
		normalizeLiterals(re)
		alts = append(alts, re.Simplify())
	}
	switch len(alts) {
	case 0:
		return nil, errors.New("the rule has neither a pattern nor a literal")
	case 1:
		return alts[0], nil
	}
	return &syntax.Regexp{Op: syntax.OpAlternate, Sub: alts}, nil
}

// normalizeLiterals rewrites the literal runs of a pattern in the form the
// text is matched in.
func normalizeLiterals(re *syntax.Regexp) {
	if re.Op == syntax.OpLiteral {
		if n := normalizeString(string(re.Rune)); n == "" {
			re.Op, re.Rune = syntax.OpEmptyMatch, nil
		} else {
			re.Rune = []rune(n)
		}
	}
	for _, s := range re.Sub {
		normalizeLiterals(s)
	}
}

// Rules returns the number of rules (for status).
func (p *Policy) Rules() int {
	if p == nil || p.core == nil {
		return 0
	}
	return len(p.core.rules)
}

// RuleNames lists every name a decision can carry: the built-in checks,
// then the rules in config order (the label values of
// glmctl_guard_policy_decisions_total's rule).
func (p *Policy) RuleNames() []string {
	out := []string{config.PolicyMaxPromptTokens, config.PolicyMaxTokens, config.PolicyDenyParams, config.PolicyUnreadable}
	if p != nil && p.core != nil {
		for _, r := range p.core.rules {
			out = append(out, r.name)
		}
	}
	return out
}

// WithOverride returns p narrowed by a key's override: the lower of each
// cap, the union of denied parameters. It returns p itself when o adds
// nothing, so keys without an override cost nothing; otherwise one small
// copy sharing the compiled rules (callers may cache it per key).
func (p *Policy) WithOverride(o *keys.PolicyOverride) *Policy {
	if o == nil {
		return p
	}
	q := &Policy{}
	if p != nil {
		*q = *p
	}
	q.maxPrompt = tighter(q.maxPrompt, o.MaxPromptTokens)
	q.maxTokens = tighter(q.maxTokens, o.MaxTokens)
	for _, d := range o.DenyParams {
		if !slices.Contains(q.deny, d) {
			q.deny = append(slices.Clip(q.deny), d)
		}
	}
	if p != nil && q.maxPrompt == p.maxPrompt && q.maxTokens == p.maxTokens && len(q.deny) == len(p.deny) {
		return p
	}
	return q
}

// tighter is the lower of two caps, 0 meaning none.
func tighter(a, b int64) int64 {
	switch {
	case b <= 0:
		return a
	case a <= 0:
		return b
	}
	return min(a, b)
}

// policyRoute is what a route's body means to the policy.
type policyRoute int

const (
	policyOther      policyRoute = iota // no completion bound (embeddings, tokenize…)
	policyChat                          // max_completion_tokens or max_tokens
	policyCompletion                    // max_tokens (absent: 16)
)

func routeKind(route string) (policyRoute, string) {
	switch route {
	case "/v1/chat/completions":
		return policyChat, fieldMessages
	case "/v1/completions":
		return policyCompletion, fieldPrompt
	case "/v1/embeddings":
		return policyOther, fieldInput
	}
	return policyOther, ""
}

// Check decides on one request: body is the JSON body as the client sent
// it, route the routed path, promptTokens the guard's prompt estimate and
// maxTokens the completion tokens it reserves per choice (the client's
// bound, or the default it reserves when there is none). Check never
// panics and never quotes the body in its messages.
func (p *Policy) Check(body []byte, route string, promptTokens, maxTokens int64) Verdict {
	var v Verdict
	if p == nil {
		return v
	}
	kind, promptParam := routeKind(route)
	if p.maxPrompt > 0 && promptTokens > p.maxPrompt {
		return reject(config.PolicyMaxPromptTokens, promptParam,
			fmt.Sprintf("The prompt is about %d tokens, more than the %d this key may send (policy %q). Shorten the prompt.", promptTokens, p.maxPrompt, config.PolicyMaxPromptTokens))
	}
	hasRules := p.core != nil
	capTokens := p.maxTokens > 0 && kind != policyOther
	if !hasRules && len(p.deny) == 0 && !capTokens {
		return v
	}
	pool := &bareScans
	if hasRules {
		pool = &p.core.scans
	}
	sc := pool.Get().(*policyScan)
	defer putScan(pool, sc)
	sc.body.collect = hasRules
	sc.body.readBody(body, p.deny)
	f := &sc.body.facts
	if f.malformed {
		return reject(config.PolicyUnreadable, "",
			fmt.Sprintf("The request body could not be read for this service's request policy (policy %q); send one JSON object.", config.PolicyUnreadable))
	}
	if f.denied != "" {
		return reject(config.PolicyDenyParams, f.denied,
			fmt.Sprintf("The parameter %q is not allowed for this key (policy %q). Remove it from the request.", f.denied, config.PolicyDenyParams))
	}
	if capTokens {
		param, bounded := completionBound(kind, f)
		switch {
		case !bounded:
			v.MaxTokens = p.maxTokens
		case maxTokens > p.maxTokens:
			return reject(config.PolicyMaxTokens, param,
				fmt.Sprintf("%s is %d, more than the %d this key may ask for (policy %q). Lower %s.", param, maxTokens, p.maxTokens, config.PolicyMaxTokens, param))
		}
	}
	if !hasRules {
		return v
	}
	if f.unreadable != "" {
		act := audit.PolicyFlag
		if p.core.anyReject {
			act = audit.PolicyReject
		}
		v.Hits = append(v.Hits, audit.PolicyHit{Rule: config.PolicyUnreadable, Action: act})
		if act == audit.PolicyReject {
			v.Rejected, v.Rule, v.Param = true, config.PolicyUnreadable, promptParam
			v.Message = fmt.Sprintf("The prompt cannot be checked by this service's content policy: it holds %s (policy %q). Send the prompt as text.", f.unreadable, config.PolicyUnreadable)
			return v
		}
	}
	found := sc.found
	clear(found)
	n := p.core.dfa.scan(sc.body.text, found)
	// Latin look-alikes in a Latin word ("pаssword" with a Cyrillic а)
	// are read as the letters they imitate, too.
	if skel, mixed := appendSkeleton(sc.skel[:0], sc.body.text); mixed {
		sc.skel = skel
		n += p.core.dfa.scan(skel, found)
	}
	if n == 0 {
		return v
	}
	for i, r := range p.core.rules {
		if !found[i] {
			continue
		}
		act := audit.PolicyFlag
		if r.reject {
			act = audit.PolicyReject
			if !v.Rejected {
				v.Rejected, v.Rule, v.Param = true, r.name, promptParam
				v.Message = fmt.Sprintf("The request was refused by this service's content policy (rule %q).", r.name)
			}
		}
		v.Hits = append(v.Hits, audit.PolicyHit{Rule: r.name, Action: act})
	}
	if v.Rejected {
		v.MaxTokens = 0
	}
	return v
}

// bareScans holds the scratch of policies without rules.
var bareScans = sync.Pool{New: func() any { return &policyScan{} }}

// putScan returns a scan's scratch to its pool, unless a huge body grew it.
func putScan(pool *sync.Pool, sc *policyScan) {
	if cap(sc.body.text) > 1<<20 || cap(sc.body.tmp) > 1<<20 || cap(sc.skel) > 1<<20 {
		sc.body.text, sc.body.tmp, sc.skel = nil, nil, nil
	}
	sc.body.b = nil
	pool.Put(sc)
}

// completionBound tells whether the body bounds its completion, and the
// parameter that does (as inspect's completionBudget reads them).
func completionBound(kind policyRoute, f *bodyFacts) (param string, bounded bool) {
	mct, mt := f.maxCompletionTokens, f.maxTokens
	if kind == policyChat {
		switch {
		case mct != nil && string(mct) != "null" && !isZero(mct):
			return fieldMaxCompletionTokens, true
		case mt != nil && string(mt) != "null":
			return fieldMaxTokens, true
		}
		return fieldMaxTokens, false
	}
	return fieldMaxTokens, string(mt) != "null" // absent: vLLM's 16
}

func isZero(raw []byte) bool {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return err == nil && n == 0
}

func reject(rule, param, msg string) Verdict {
	return Verdict{Rejected: true, Rule: rule, Param: param, Message: msg,
		Hits: []audit.PolicyHit{{Rule: rule, Action: audit.PolicyReject}}}
}
