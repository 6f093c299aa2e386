package guard

import (
	"fmt"
	"strings"
	"testing"

	"github.com/glmctl/glmctl/internal/config"
)

// benchRules is the 100 rules: 50 literal rules (CJK among them)
// and 50 RE2 patterns of the kinds operators write.
func benchRules() []*config.PolicyRule {
	cjk := []string{"违禁词", "敏感内容", "赌博网站", "翻墙软件", "个人身份证", "银行卡号", "诈骗", "暴力", "毒品交易", "黑客攻击"}
	var rules []*config.PolicyRule
	for i := range 50 {
		lits := []string{fmt.Sprintf("forbidden phrase %d", i), fmt.Sprintf("blocked-term-%d", i)}
		if i < len(cjk) {
			lits = append(lits, cjk[i])
		}
		action := config.PolicyFlag
		if i%5 == 0 {
			action = config.PolicyReject
		}
		rules = append(rules, literalRule(fmt.Sprintf("literal-%d", i), action, lits...))
	}
	templates := []string{
		`(?i)BEGIN (RSA|OPENSSH|EC|DSA) PRIVATE KEY %d`,
		`(?i)\bapi[_-]?key[:=]\s*[a-z0-9]{%d,}`,
		`\b\d{4}([ -]?\d{4}){3}\b.{0,%d}`,
		`(?i)ignore (all )?previous instructions v%d`,
		`[a-z0-9._%%+-]+@example%d\.com`,
		`(?i)\bsk-[a-z0-9]{20,}%d`,
		`\b(?:\d{1,3}\.){3}\d{1,3}:%d\b`,
		`(?i)how to (make|build) (a )?bomb %d`,
		`(?m)^password\s*=\s*\S+ %d$`,
		`[\p{Han}]{2}违规%d`,
	}
	for i := range 50 {
		rules = append(rules, patternRule(fmt.Sprintf("pattern-%d", i), config.PolicyFlag, fmt.Sprintf(templates[i%len(templates)], i+8)))
	}
	return rules
}

// benchChat is a typical chat request of about 2 KB.
func benchChat(cjk bool) []byte {
	text := "Please summarise the following meeting notes about the quarterly budget review and list the action items with their owners. "
	if cjk {
		text = "请总结以下关于季度预算审查的会议记录，并列出行动项目及其负责人。我们讨论了市场营销费用和研发投入。"
	}
	var b strings.Builder
	for b.Len() < 1800 {
		b.WriteString(text)
	}
	body := `{"model":"glm-4.7-flash","stream":true,"max_tokens":512,"temperature":0.7,"messages":[` +
		`{"role":"system","content":"You are a helpful assistant."},` +
		`{"role":"user","content":` + jsonString(b.String()) + `}]}`
	return []byte(body)
}

func jsonString(s string) string {
	return `"` + strings.NewReplacer(`"`, `\"`, `\`, `\\`, "\n", `\n`).Replace(s) + `"`
}

// BenchmarkPolicy times Check on a typical 2 KB chat body: no policy, a
// policy of caps and denied parameters only, and the 100 rules (English
// and CJK prompts), cache warm as in a running guard.
func BenchmarkPolicy(b *testing.B) {
	caps := &config.Policy{MaxPromptTokens: 8000, MaxTokens: 2000, DenyParams: []string{"logprobs", "tools", "n"}}
	full := *caps
	full.Rules = benchRules()
	cases := []struct {
		name string
		cfg  *config.Policy
		cjk  bool
	}{
		{"rules=0/none", nil, false},
		{"rules=0/caps", caps, false},
		{"rules=100/en", &full, false},
		{"rules=100/cjk", &full, true},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			p := mustPolicy(b, bc.cfg)
			body := benchChat(bc.cjk)
			if v := p.Check(body, chatRoute, 500, 512); v.Rejected || len(v.Hits) != 0 {
				b.Fatalf("%+v", v)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				p.Check(body, chatRoute, 500, 512)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
		})
	}
	b.Run("rules=100/parallel", func(b *testing.B) {
		p := mustPolicy(b, &full)
		body := benchChat(false)
		b.SetBytes(int64(len(body)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p.Check(body, chatRoute, 500, 512)
			}
		})
	})
}

// BenchmarkPolicyBacktracking times (a+)+$ and the 100 rules over 1 MiB of
// "aaa…b", the input that takes backtracking engines exponential time.
func BenchmarkPolicyBacktracking(b *testing.B) {
	rules := append(benchRules(), patternRule("nested", config.PolicyReject, `(a+)+$`), patternRule("alt", config.PolicyReject, `^(a|aa)+$`))
	p := mustPolicy(b, &config.Policy{Rules: rules})
	body := chatRequest(strings.Repeat("a", 1<<20-1) + "b")
	if v := p.Check(body, chatRoute, 1, 1); len(v.Hits) != 0 {
		b.Fatalf("%+v", v)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		p.Check(body, chatRoute, 1, 1)
	}
}
