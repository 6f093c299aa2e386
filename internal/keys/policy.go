package keys

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/jsonc"
)

// PolicyOverride is a key's own request policy, the "policy" object of its
// entry: {"max_prompt_tokens": N, "max_tokens": N, "deny_params": [...]}.
// It can only tighten the config's policy block: the guard applies the
// lower of each cap and the union of the denied parameters. Unlike other
// unknown fields, an unknown field in it is an error, not a warning: a
// misspelt cap ("max_token") would otherwise leave the key unrestricted
// without anyone noticing.
type PolicyOverride struct {
	MaxPromptTokens int64    `json:"max_prompt_tokens,omitempty"` // 0: the config's
	MaxTokens       int64    `json:"max_tokens,omitempty"`        // 0: the config's
	DenyParams      []string `json:"deny_params,omitempty"`       // added to the config's
}

// maxPolicyCap bounds the caps (no request comes near it).
const maxPolicyCap = 1 << 40

// parsePolicy reads the "policy" member m of key's entry, with exact field
// names and every problem at its line:col. null means no policy.
func parsePolicy(doc *jsonc.Doc, m jsonc.Member, key string) (*PolicyOverride, []error) {
	if string(bytes.TrimSpace(m.Value)) == "null" {
		return nil, nil
	}
	fields, err := doc.Members(m)
	if err != nil {
		return nil, []error{doc.Errorf(m.ValueOffset, `key %q: policy must be an object such as {"max_tokens": 500}`, key)}
	}
	p := &PolicyOverride{}
	var errs []error
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f.Name] {
			errs = append(errs, doc.Errorf(f.Offset, "key %q: policy field %q given twice", key, f.Name))
			continue
		}
		seen[f.Name] = true
		switch f.Name {
		case "max_prompt_tokens", "max_tokens":
			n, err := strconv.ParseInt(string(bytes.TrimSpace(f.Value)), 10, 64)
			if err != nil || n < 1 || n > maxPolicyCap {
				errs = append(errs, doc.Errorf(f.ValueOffset, "key %q: policy %s must be a whole number from 1 to %d (write e.g. %q: 500)", key, f.Name, int64(maxPolicyCap), f.Name))
				continue
			}
			if f.Name == "max_tokens" {
				p.MaxTokens = n
			} else {
				p.MaxPromptTokens = n
			}
		case "deny_params":
			var names []string
			if json.Unmarshal(f.Value, &names) != nil || names == nil {
				errs = append(errs, doc.Errorf(f.ValueOffset, `key %q: policy deny_params must be a list of parameter names such as ["tools", "logprobs"]`, key))
				continue
			}
			for i, n := range names {
				switch msg := config.CheckDenyParam(n); {
				case msg != "":
					errs = append(errs, doc.Errorf(f.ValueOffset, "key %q: policy %s", key, msg))
				case slices.Contains(names[:i], n):
					errs = append(errs, doc.Errorf(f.ValueOffset, "key %q: policy deny_params lists %q twice", key, n))
				}
			}
			p.DenyParams = names
		default:
			errs = append(errs, doc.Errorf(f.Offset, "key %q: unknown policy field %q: the policy of a key takes %s", key, f.Name, `"max_prompt_tokens", "max_tokens" and "deny_params"`))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// policyEqual reports whether two overrides are written the same.
func policyEqual(a, b *PolicyOverride) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.MaxPromptTokens == b.MaxPromptTokens && a.MaxTokens == b.MaxTokens && slices.Equal(a.DenyParams, b.DenyParams)
}
