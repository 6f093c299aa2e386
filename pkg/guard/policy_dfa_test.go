package guard

import (
	"regexp"
	"regexp/syntax"
	"testing"
	"unicode/utf8"
)

// mustSetDFA compiles patterns (Go syntax, no normalisation) into one DFA.
func mustSetDFA(tb testing.TB, pats []string) *dfa {
	tb.Helper()
	var res []*syntax.Regexp
	for _, p := range pats {
		re, err := syntax.Parse(p, syntax.Perl)
		if err != nil {
			tb.Fatalf("%q: %v", p, err)
		}
		res = append(res, re.Simplify())
	}
	insts, start, err := compileSet(res)
	if err != nil {
		tb.Fatal(err)
	}
	return newDFA(insts, start, len(res))
}

// TestDFAAgainstRegexp: the set DFA finds exactly the rules Go's regexp
// finds, one by one, for assertions, classes, folding and UTF-8.
func TestDFAAgainstRegexp(t *testing.T) {
	pats := []string{
		`abc`, `(?i)abc`, `^abc`, `abc$`, `(?m)^abc$`, `\babc\b`, `\Bbc`, `a\B`, `\Aab`, `c\z`,
		`a.c`, `(?s)a.c`, `[^a-z]x`, `\d{3,5}`, `(a|b)*c`, `x+y?z`, `é`, `(?i)é`, `(?i)ΣΑΣ`, `\p{Han}+`,
		`违禁词`, `[\x{4e00}-\x{9fff}]{2}`, `(?i)k`, `BEGIN (RSA|OPENSSH) PRIVATE KEY`, `(a+)+$`,
		`(?m)$`, `(?m)^$`, `\w+@\w+\.com`, `[[:upper:]]{2}`, `.`, `(?U)a+?b`, `ab|bc|cd`, `q`,
		`\x{10000}`, `[\x{80}-\x{10FFFF}]`, `[^\x00-\x7f]`, `a{2}b`,
	}
	texts := []string{
		"", "abc", "xabc", "abcx", "ab\nabc\nx", "xx abc yy", "abcd", "ABC", "aBc", "a\nc", "a c",
		"1x", "12345", "bbbbac", "xyz", "xz", "cafe\u0301", "café", "CAFÉ", "σας", "ΣΑΣ", "汉字",
		"这是违禁词吗", "\u212a", "K", "BEGIN RSA PRIVATE KEY", "aaaaaaaaaaaaaaaaaaaab", "aaaa",
		"\n", "x\n\ny", "me@example.com", "AB", "é", "\U00010000", "\xff\xfe", "ab\xffc", "aab",
		"a\u00e9", "_abc_", "abc_", "bc", "zbc",
	}
	d := mustSetDFA(t, pats)
	for _, text := range texts {
		found := make([]bool, len(pats))
		d.scan([]byte(text), found)
		for i, p := range pats {
			want := regexp.MustCompile(p).MatchString(text)
			if !utf8.ValidString(text) {
				continue // Go reads invalid bytes as U+FFFD; the policy never scans invalid UTF-8
			}
			if found[i] != want {
				t.Errorf("pattern %q on %q: dfa %v, regexp %v", p, text, found[i], want)
			}
		}
	}
}

// TestUTF8Ranges: the byte sequences of a rune range accept exactly its
// runes.
func TestUTF8Ranges(t *testing.T) {
	ranges := [][2]rune{{0, 0x10FFFF}, {0x41, 0x5A}, {0x7F, 0x80}, {0x7FF, 0x800}, {0xD7FF, 0xE000},
		{0xFFFF, 0x10000}, {0x4E00, 0x9FFF}, {0x123, 0x4567}, {0x10000, 0x10FFFF}, {0xE9, 0xE9}, {0x3FF, 0x1001}}
	for _, rg := range ranges {
		var seqs [][]byteRange
		utf8Ranges(rg[0], rg[1], func(s []byteRange) { seqs = append(seqs, s) })
		in := func(r rune) bool {
			var b [4]byte
			n := utf8.EncodeRune(b[:], r)
			hits := 0
			for _, s := range seqs {
				if len(s) != n {
					continue
				}
				ok := true
				for i := range s {
					ok = ok && s[i].lo <= b[i] && b[i] <= s[i].hi
				}
				if ok {
					hits++
				}
			}
			if hits > 1 {
				t.Fatalf("range %x: rune %x in %d sequences", rg, r, hits)
			}
			return hits == 1
		}
		for r := rune(0); r <= 0x10FFFF; r += 1 + r/4096 {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			want := r >= rg[0] && r <= rg[1]
			if got := in(r); got != want {
				t.Fatalf("range %x: rune %x: got %v want %v", rg, r, got, want)
			}
		}
		for _, r := range []rune{rg[0], rg[1], rg[0] - 1, rg[1] + 1} {
			if r < 0 || r > 0x10FFFF || r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			if got, want := in(r), r >= rg[0] && r <= rg[1]; got != want {
				t.Fatalf("range %x: edge rune %x: got %v want %v", rg, r, got, want)
			}
		}
	}
}
