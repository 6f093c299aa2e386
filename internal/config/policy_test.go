package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestPolicyDecode: the design's policy block decodes as written.
func TestPolicyDecode(t *testing.T) {
	cfg, err := parseFixture(t, filepath.Join(testdataDir, "valid-design.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	// At: the pattern, or the rule block when there is none (the fixture
	// is named as parseFixture names it).
	want := &Policy{
		MaxPromptTokens: 8000,
		MaxTokens:       2000,
		DenyParams:      []string{"logprobs", "tools"},
		Rules: []*PolicyRule{
			{Name: "no-credentials", Pattern: "(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY", Action: PolicyReject, At: "valid-design.hcl:98:15"},
			{Name: "watchlist", Literal: []string{"违禁词"}, Action: PolicyFlag, At: "valid-design.hcl:101:3"},
		},
	}
	if !reflect.DeepEqual(cfg.Policy, want) {
		t.Errorf("policy = %+v, want %+v", cfg.Policy, want)
		for i, r := range cfg.Policy.Rules {
			t.Logf("rule %d: %+v", i, *r)
		}
	}
}

// TestPolicyOptional: no block, no policy; an empty block, an empty policy.
func TestPolicyOptional(t *testing.T) {
	const guard = "guard {\n  upstream = \"unix:///run/v.sock\"\n}\n"
	cfg, err := ParseWithOptions([]byte(guard), "p.hcl", fixtureOptions())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy != nil {
		t.Errorf("no policy block gave %+v", cfg.Policy)
	}
	cfg, err = ParseWithOptions([]byte(guard+"policy {}\n"), "p.hcl", fixtureOptions())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy == nil || cfg.Policy.MaxTokens != 0 || len(cfg.Policy.Rules) != 0 {
		t.Errorf("empty policy block gave %+v", cfg.Policy)
	}
}

// TestPolicyWarnings: an unknown parameter name loads, with a warning at
// its place; a policy without a guard is an error (it would do nothing).
func TestPolicyWarnings(t *testing.T) {
	if _, err := ParseWithOptions([]byte("policy {\n  max_tokens = 5\n}\n"), "p.hcl", fixtureOptions()); err == nil ||
		!strings.Contains(err.Error(), "p.hcl:1:1: a policy block without a guard block has no effect") {
		t.Errorf("policy without guard: err = %v", err)
	}
	src := "guard {\n  upstream = \"unix:///run/v.sock\"\n}\npolicy {\n  deny_params = [\"logprob\", \"tools\"]\n  rule \"a\" {\n    pattern = \"(?i)x+y\"\n    action  = \"flag\"\n  }\n}\n"
	cfg, err := ParseWithOptions([]byte(src), "p.hcl", fixtureOptions())
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Warnings.Error()
	for _, w := range []string{
		`p.hcl:5:18: deny_params names "logprob", which is not a request parameter glmctl knows`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("warnings %q lack %q", got, w)
		}
	}
}
