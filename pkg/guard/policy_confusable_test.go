package guard

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/glmctl/glmctl/internal/config"
)

func TestAppendSkeleton(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		mixed    bool
	}{
		{"-----ВЕGIN RSA PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", true}, // Cyrillic В, Е
		{"my pаsswоrd is", "my password is", true},                                   // Cyrillic а, о
		{"ρasswοrd", "password", true},                                               // Greek ρ, ο
		{"привет, мир: сор", "привет, мир: сор", false},                              // one script: left alone
		{"Ελληνικά και English", "Ελληνικά και English", false},
		{"plain ASCII only", "plain ASCII only", false},
		{"违禁词 ｆｕｌｌ", "违禁词 ｆｕｌｌ", false},
		{"сор cop сoр", "сор cop cop", true}, // only the mixed word
	} {
		got, mixed := appendSkeleton(nil, []byte(tc.in))
		if !mixed {
			got = []byte(tc.in)
		}
		if string(got) != tc.want || mixed != tc.mixed {
			t.Errorf("appendSkeleton(%q) = %q, %v; want %q, %v", tc.in, got, mixed, tc.want, tc.mixed)
		}
		if utf8.RuneCount(got) != utf8.RuneCountInString(tc.in) {
			t.Errorf("%q: rune count changed", tc.in)
		}
	}
}

// TestPolicyLookalikes: a rule spelt in Latin letters matches the same
// words written with Cyrillic or Greek look-alikes mixed in; a prompt
// wholly in another script does not match a Latin rule by looking alike.
func TestPolicyLookalikes(t *testing.T) {
	p := mustPolicy(t, &config.Policy{Rules: []*config.PolicyRule{
		patternRule("cred", config.PolicyReject, `(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY`),
		literalRule("pw", config.PolicyFlag, "password"),
		literalRule("cop", config.PolicyFlag, "cop"),
	}})
	for _, tc := range []struct {
		prompt, want string
	}{
		{"-----ВЕGIN RSA PRIVATE KEY-----\nMIIE…", "cred:reject"},
		{"my pаsswоrd is hunter2", "pw:flag"},
		{"my ρasswοrd is hunter2", "pw:flag"},
		{"сор на русском", ""},
		{"cop", "cop:flag"},
	} {
		v := p.Check([]byte(chatRequest(tc.prompt)), chatRoute, 1, 1)
		if got := hits(v); got != tc.want {
			t.Errorf("%q: hits %q, want %q", tc.prompt, got, tc.want)
		}
		if strings.HasSuffix(tc.want, ":reject") != v.Rejected {
			t.Errorf("%q: rejected %v", tc.prompt, v.Rejected)
		}
	}
}

// TestMayHoldConfusable: the eight-at-a-time test finds a lead byte
// 0xCD–0xD4 wherever it is, and nothing else, as a byte loop does.
func TestMayHoldConfusable(t *testing.T) {
	naive := func(b []byte) bool {
		for _, c := range b {
			if c >= 0xCD && c <= 0xD4 {
				return true
			}
		}
		return false
	}
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 19; pos++ {
			for _, fill := range []byte{'a', 0xE4, 0x80, 0xCC, 0xD5, 0xFF, 0x7F} {
				b := bytes.Repeat([]byte{fill}, 19)
				b[pos] = byte(c)
				if got, want := mayHoldConfusable(b), naive(b); got != want {
					t.Fatalf("byte %#x at %d among %#x: %v, want %v", c, pos, fill, got, want)
				}
			}
		}
	}
}
