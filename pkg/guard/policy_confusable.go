package guard

import (
	"encoding/binary"
	"unicode"
	"unicode/utf8"
)

// confusables maps letters of other scripts that look like Latin letters
// to the letters they imitate: the Cyrillic and Greek part of Unicode's
// confusables (UTS #39) that renders the same as a Latin letter in common
// fonts (letters that only look like Latin small capitals, such as
// Cyrillic к or т, are left out). "ВЕGIN" (Cyrillic В and Е) reads
// "BEGIN".
var confusables = map[rune]rune{
	// Cyrillic, lower case.
	'а': 'a', 'е': 'e', 'о': 'o', 'р': 'p', 'с': 'c', 'у': 'y', 'х': 'x', 'ѕ': 's', 'і': 'i', 'ј': 'j',
	'ԁ': 'd', 'һ': 'h', 'ԛ': 'q', 'ԝ': 'w', 'ӏ': 'l', 'ү': 'y',
	// Cyrillic, upper case.
	'А': 'A', 'В': 'B', 'Е': 'E', 'К': 'K', 'М': 'M', 'Н': 'H', 'О': 'O', 'Р': 'P', 'С': 'C', 'Т': 'T',
	'У': 'Y', 'Х': 'X', 'Ѕ': 'S', 'І': 'I', 'Ј': 'J', 'Ԛ': 'Q', 'Ԝ': 'W', 'Ӏ': 'I', 'Ү': 'Y',
	// Greek.
	'ο': 'o', 'α': 'a', 'ν': 'v', 'ρ': 'p', 'ι': 'i',
	'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K', 'Μ': 'M', 'Ν': 'N', 'Ο': 'O',
	'Ρ': 'P', 'Τ': 'T', 'Υ': 'Y', 'Χ': 'X',
}

// mayHoldConfusable reports whether text has a UTF-8 lead byte of the
// Greek or Cyrillic blocks (U+0340–U+053F), where every entry of
// confusables lies: most prompts are passed over here at once.
func mayHoldConfusable(text []byte) bool {
	i := 0
	for ; i+8 <= len(text); i += 8 {
		// Eight bytes at a time: flipping the top bit makes the lead bytes
		// 0xCD–0xD4 the 7-bit values 0x4D–0x54 and every ASCII byte a
		// high one, which the test below passes over.
		if hasBetween(binary.LittleEndian.Uint64(text[i:])^(0x80*ones), 0x4C, 0x55) {
			return true
		}
	}
	for _, c := range text[i:] {
		if c-0xCD < 8 { // 0xCD–0xD4
			return true
		}
	}
	return false
}

// ones has 1 in every byte.
const ones = 0x0101010101010101

// hasBetween reports whether a byte of x has its top bit clear and a
// value strictly between m and n (0 <= m <= 127, 0 <= n <= 128), eight at
// once (the classic SWAR test).
func hasBetween(x, m, n uint64) bool {
	return (ones*(127+n)-(x&(ones*127)))&^x&((x&(ones*127))+ones*(127-m))&(ones*0x80) != 0
}

// appendSkeleton appends to dst the text with every mixed-script word — a
// run of letters holding both a Latin letter and a look-alike of one —
// spelt with the Latin letters its look-alikes imitate, and reports
// whether any word was. Words of one script are left as they are: Russian
// prose is not English spelt oddly, but "pаssword" with a Cyrillic а is.
// The policy scans the skeleton as well as the text (Check), so a rule
// spelt in Latin letters cannot be dodged with look-alikes.
func appendSkeleton(dst, text []byte) ([]byte, bool) {
	if !mayHoldConfusable(text) {
		return dst, false
	}
	changed := false
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRune(text[i:])
		if !unicode.IsLetter(r) {
			dst = append(dst, text[i:i+size]...)
			i += size
			continue
		}
		// One word: [i, j).
		j, latin, lookalike := i, false, false
		for j < len(text) {
			r, size := utf8.DecodeRune(text[j:])
			if !unicode.IsLetter(r) {
				break
			}
			if r < utf8.RuneSelf {
				latin = true
			} else if _, ok := confusables[r]; ok {
				lookalike = true
			}
			j += size
		}
		if !latin || !lookalike {
			dst = append(dst, text[i:j]...)
			i = j
			continue
		}
		changed = true
		for i < j {
			r, size := utf8.DecodeRune(text[i:])
			if l, ok := confusables[r]; ok {
				dst = append(dst, byte(l))
			} else {
				dst = append(dst, text[i:i+size]...)
			}
			i += size
		}
	}
	return dst, changed
}
