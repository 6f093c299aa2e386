package keys

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/jsonc"
)

// TestPolicyOverrideParse: the object form's policy reaches the key.
func TestPolicyOverrideParse(t *testing.T) {
	src := `{"api_keys": {
  "alice": {"sha256": "` + Hash("sk-alice-alice") + `", "policy": {"max_tokens": 500, "deny_params": ["tools", "logprobs"]}},
  "bob": {"sha256": "` + Hash("sk-bob-bob-bob") + `", "policy": null},
  "carol": "sk-carol-carol"
}}`
	f, warns, err := Parse([]byte(src))
	if err != nil || len(warns) != 1 {
		t.Fatalf("parse: %v %v", err, warns)
	}
	want := &PolicyOverride{MaxTokens: 500, DenyParams: []string{"tools", "logprobs"}}
	if got := f.Entry("alice").Policy; !reflect.DeepEqual(got, want) {
		t.Errorf("alice policy = %+v, want %+v", got, want)
	}
	if f.Entry("bob").Policy != nil || f.Entry("carol").Policy != nil {
		t.Errorf("bob/carol have a policy")
	}
	k, err := NewSet(f).Lookup("sk-alice-alice", time.Now())
	if err != nil || !reflect.DeepEqual(k.Policy, want) {
		t.Fatalf("lookup: %+v %v", k, err)
	}
}

// TestPolicyOverrideErrors: every problem of a policy object is an error
// at its line:col; an unknown field too (a misspelt cap must not pass).
func TestPolicyOverrideErrors(t *testing.T) {
	h := Hash("sk-alice-alice")
	cases := []struct{ name, policy, want string }{
		{"not object", `"tight"`, `2:101: key "alice": policy must be an object`},
		{"zero", `{"max_tokens": 0}`, `2:116: key "alice": policy max_tokens must be a whole number from 1`},
		{"float", `{"max_prompt_tokens": 1e3}`, `2:123: key "alice": policy max_prompt_tokens must be a whole number`},
		{"string", `{"max_tokens": "500"}`, `policy max_tokens must be a whole number`},
		{"unknown", `{"max_token": 5}`, `2:102: key "alice": unknown policy field "max_token"`},
		{"case", `{"Max_Tokens": 5}`, `unknown policy field "Max_Tokens"`},
		{"twice", `{"max_tokens": 5, "max_tokens": 9}`, `2:119: key "alice": policy field "max_tokens" given twice`},
		{"deny type", `{"deny_params": "tools"}`, `policy deny_params must be a list`},
		{"deny model", `{"deny_params": ["model"]}`, `policy deny_params cannot refuse "model"`},
		{"deny syntax", `{"deny_params": ["n>1"]}`, `invalid deny_params entry "n>1"`},
		{"deny twice", `{"deny_params": ["n", "n"]}`, `deny_params lists "n" twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The policy's value starts at 2:101.
			src := "{\"api_keys\": {\n  \"alice\": {\"sha256\": \"" + h + "\", \"policy\": " + tc.policy + "}}}"
			_, _, err := Parse([]byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			var je *jsonc.Error
			if !errors.As(err, &je) {
				t.Fatalf("err %T is not located", err)
			}
		})
	}
}

// TestPolicyOverrideKeptByWrites: Save and Update (edits of other entries,
// revoke, rotate of this one) keep a key's policy.
func TestPolicyOverrideKeptByWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api_keys.json")
	src := "{\"api_keys\": {\n  // alice is capped\n  \"alice\": {\"sha256\": \"" + Hash("sk-alice-alice") + "\", \"policy\": {\"max_tokens\": 500}},\n  \"bob\": {\"sha256\": \"" + Hash("sk-bob-bob-bob") + "\"}\n}}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Update(path, false, func(f *File) error { _, err := f.Revoke("bob"); return err }); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(path)
	if !strings.Contains(string(out), `"policy": {"max_tokens": 500}`) || !strings.Contains(string(out), "// alice is capped") {
		t.Fatalf("alice's entry not kept as written:\n%s", out)
	}
	if err := Update(path, false, func(f *File) error {
		return f.Rotate("alice", "sk-alice-new-new", time.Time{}, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	f, _, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Entry("alice").Policy; p == nil || p.MaxTokens != 500 {
		t.Fatalf("policy lost by rotate: %+v", p)
	}
	f.Entry("alice").Policy = &PolicyOverride{MaxPromptTokens: 100, DenyParams: []string{"tools"}}
	if err := Save(path, f); err != nil {
		t.Fatal(err)
	}
	g, _, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := g.Entry("alice").Policy; !reflect.DeepEqual(p, &PolicyOverride{MaxPromptTokens: 100, DenyParams: []string{"tools"}}) {
		t.Fatalf("policy after Save = %+v", p)
	}
}
