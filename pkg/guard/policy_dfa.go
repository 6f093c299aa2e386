package guard

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"regexp/syntax"
)

// The policy's patterns are matched by one automaton over the prompt's
// bytes: every rule (its literals and its RE2 expression) is compiled into
// one byte-level NFA whose match instructions name their rule, and a lazy
// DFA runs that NFA over the text once, unanchored, the way RE2's
// RE2::Set does. A DFA state is the set of NFA instructions alive at a
// position; the states visited are built on first use and cached, so the
// scan costs about one table lookup per byte whatever the number of rules,
// and never backtracks. Because a state holds every live thread of every
// rule, a rule whose match overlaps or lies inside another rule's match is
// found as well: the scan reports the set of all rules that match anywhere,
// not the leftmost match.
//
// Go's regexp has no DFA: its NFA over an alternation of 100 patterns costs
// about 30 ns a byte, more than the guard spends on a whole request.

// nfaOp is the kind of an NFA instruction.
type nfaOp uint8

const (
	nfaByte  nfaOp = iota // consume a byte in [lo, hi], go to out
	nfaSplit              // go to out and to out1
	nfaEmpty              // an empty-width assertion (cond), then out
	nfaMatch              // rule matched
	nfaFail               // never matches
)

type nfaInst struct {
	op     nfaOp
	lo, hi byte
	cond   syntax.EmptyOp
	out    uint32
	out1   uint32
	rule   int32
}

// maxPolicyInsts bounds the compiled program (about 20 bytes an
// instruction), so a policy cannot take unbounded memory.
const maxPolicyInsts = 1 << 19

// errPolicyTooLarge is returned for patterns whose program exceeds
// maxPolicyInsts.
var errPolicyTooLarge = errors.New("with this rule the policy's patterns need more than 524,288 automaton instructions " +
	"(large counted repeats of Unicode classes, such as [\\p{L}]{1000}, cost the most): " +
	"write a smaller repeat count or a narrower class, or split the rule")

// tooLargeError says which rule took the program past maxPolicyInsts.
type tooLargeError struct{ rule int }

func (e *tooLargeError) Error() string { return errPolicyTooLarge.Error() }
func (e *tooLargeError) Unwrap() error { return errPolicyTooLarge }

// nfaCompiler builds the program right to left: each piece is compiled
// with its continuation, so no patch lists are needed.
type nfaCompiler struct {
	inst []nfaInst
	err  error
	// byteMemo shares identical byte instructions (same range, same
	// continuation) within a character class: UTF-8 sequences of a class
	// share their tails.
	byteMemo map[[3]uint32]uint32
}

func (c *nfaCompiler) add(in nfaInst) uint32 {
	if len(c.inst) >= maxPolicyInsts {
		c.err = errPolicyTooLarge
		return 0
	}
	c.inst = append(c.inst, in)
	return uint32(len(c.inst) - 1)
}

func (c *nfaCompiler) fail() uint32 { return c.add(nfaInst{op: nfaFail}) }

func (c *nfaCompiler) split(a, b uint32) uint32 {
	return c.add(nfaInst{op: nfaSplit, out: a, out1: b})
}

// alts joins starts into one entry point.
func (c *nfaCompiler) alts(starts []uint32) uint32 {
	switch len(starts) {
	case 0:
		return c.fail()
	case 1:
		return starts[0]
	}
	pc := starts[len(starts)-1]
	for i := len(starts) - 2; i >= 0; i-- {
		pc = c.split(starts[i], pc)
	}
	return pc
}

func (c *nfaCompiler) byteInst(lo, hi byte, next uint32) uint32 {
	k := [3]uint32{uint32(lo), uint32(hi), next}
	if pc, ok := c.byteMemo[k]; ok {
		return pc
	}
	pc := c.add(nfaInst{op: nfaByte, lo: lo, hi: hi, out: next})
	c.byteMemo[k] = pc
	return pc
}

// compile compiles re followed by next.
func (c *nfaCompiler) compile(re *syntax.Regexp, next uint32) uint32 {
	if c.err != nil {
		return 0
	}
	switch re.Op {
	case syntax.OpNoMatch:
		return c.fail()
	case syntax.OpEmptyMatch:
		return next
	case syntax.OpLiteral:
		pc := next
		for i := len(re.Rune) - 1; i >= 0; i-- {
			r := re.Rune[i]
			if re.Flags&syntax.FoldCase != 0 {
				pc = c.class(foldOrbit(r), pc)
			} else {
				pc = c.class([]rune{r, r}, pc)
			}
		}
		return pc
	case syntax.OpCharClass:
		return c.class(re.Rune, next)
	case syntax.OpAnyCharNotNL:
		return c.class([]rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune}, next)
	case syntax.OpAnyChar:
		return c.class([]rune{0, unicode.MaxRune}, next)
	case syntax.OpBeginLine:
		return c.add(nfaInst{op: nfaEmpty, cond: syntax.EmptyBeginLine, out: next})
	case syntax.OpEndLine:
		return c.add(nfaInst{op: nfaEmpty, cond: syntax.EmptyEndLine, out: next})
	case syntax.OpBeginText:
		return c.add(nfaInst{op: nfaEmpty, cond: syntax.EmptyBeginText, out: next})
	case syntax.OpEndText:
		return c.add(nfaInst{op: nfaEmpty, cond: syntax.EmptyEndText, out: next})
	case syntax.OpWordBoundary:
		return c.add(nfaInst{op: nfaEmpty, cond: syntax.EmptyWordBoundary, out: next})
	case syntax.OpNoWordBoundary:
		return c.add(nfaInst{op: nfaEmpty, cond: syntax.EmptyNoWordBoundary, out: next})
	case syntax.OpCapture:
		return c.compile(re.Sub[0], next)
	case syntax.OpStar:
		// L: split(sub → L, next)
		l := c.split(0, next)
		body := c.compile(re.Sub[0], l)
		if c.err == nil {
			c.inst[l].out = body
		}
		return l
	case syntax.OpPlus:
		l := c.split(0, next)
		body := c.compile(re.Sub[0], l)
		if c.err == nil {
			c.inst[l].out = body
		}
		return body
	case syntax.OpQuest:
		return c.split(c.compile(re.Sub[0], next), next)
	case syntax.OpRepeat:
		// Simplify removes repeats; this is a fallback for a caller that did not.
		return c.compile(re.Simplify(), next)
	case syntax.OpConcat:
		pc := next
		for i := len(re.Sub) - 1; i >= 0; i-- {
			pc = c.compile(re.Sub[i], pc)
		}
		return pc
	case syntax.OpAlternate:
		starts := make([]uint32, len(re.Sub))
		for i, s := range re.Sub {
			starts[i] = c.compile(s, next)
		}
		return c.alts(starts)
	}
	c.err = errors.New("unsupported regular expression operator")
	return 0
}

// foldOrbit is the character class of r under simple case folding (what
// (?i) matches for r).
func foldOrbit(r rune) []rune {
	rs := []rune{r}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		rs = append(rs, f)
	}
	slices.Sort(rs)
	out := make([]rune, 0, 2*len(rs))
	for _, x := range rs {
		out = append(out, x, x)
	}
	return out
}

// class compiles a character class (pairs of lo, hi runes) followed by
// next: the UTF-8 byte sequences of its runes as a trie (sequences that
// begin alike share their first instructions) with shared tails, so a
// large class such as \p{L} puts few instructions in a state.
func (c *nfaCompiler) class(pairs []rune, next uint32) uint32 {
	var seqs [][]byteRange
	for i := 0; i+1 < len(pairs); i += 2 {
		utf8Ranges(pairs[i], pairs[i+1], func(seq []byteRange) { seqs = append(seqs, seq) })
	}
	return c.seqTrie(seqs, next)
}

// seqTrie compiles the alternatives seqs followed by next, sequences with
// the same first range (adjacent: utf8Ranges emits them in order) merged.
func (c *nfaCompiler) seqTrie(seqs [][]byteRange, next uint32) uint32 {
	var starts []uint32
	for i := 0; i < len(seqs); {
		first := seqs[i][0]
		j := i + 1
		for len(seqs[i]) > 1 && j < len(seqs) && len(seqs[j]) > 1 && seqs[j][0] == first {
			j++
		}
		rest := next
		if len(seqs[i]) > 1 {
			tails := make([][]byteRange, 0, j-i)
			for _, s := range seqs[i:j] {
				tails = append(tails, s[1:])
			}
			rest = c.seqTrie(tails, next)
		}
		starts = append(starts, c.byteInst(first.lo, first.hi, rest))
		i = j
	}
	slices.Sort(starts)
	return c.alts(slices.Compact(starts))
}

type byteRange struct{ lo, hi byte }

// utf8Ranges calls emit with sequences of byte ranges whose concatenations
// encode exactly the runes lo..hi in UTF-8 (surrogates, which UTF-8 text
// cannot hold, excluded).
func utf8Ranges(lo, hi rune, emit func([]byteRange)) {
	hi = min(hi, unicode.MaxRune)
	if lo > hi {
		return
	}
	if lo <= 0xDFFF && hi >= 0xD800 { // cut out the surrogates
		utf8Ranges(lo, 0xD7FF, emit)
		utf8Ranges(0xE000, hi, emit)
		return
	}
	for _, b := range [...]rune{0x7F, 0x7FF, 0xFFFF} {
		if lo <= b && hi > b {
			utf8Ranges(lo, b, emit)
			utf8Ranges(b+1, hi, emit)
			return
		}
	}
	if hi < utf8.RuneSelf {
		emit([]byteRange{{byte(lo), byte(hi)}})
		return
	}
	n := utf8.RuneLen(lo)
	for i := 1; i < n; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				utf8Ranges(lo, lo|m, emit)
				utf8Ranges((lo|m)+1, hi, emit)
				return
			}
			if hi&m != m {
				utf8Ranges(lo, (hi&^m)-1, emit)
				utf8Ranges(hi&^m, hi, emit)
				return
			}
		}
	}
	var a, b [utf8.UTFMax]byte
	utf8.EncodeRune(a[:], lo)
	utf8.EncodeRune(b[:], hi)
	seq := make([]byteRange, n)
	for i := range seq {
		seq[i] = byteRange{a[i], b[i]}
	}
	emit(seq)
}

// compileSet compiles one expression per rule into one program; rules[i]
// matching reaches a match instruction for rule i.
func compileSet(rules []*syntax.Regexp) (insts []nfaInst, start uint32, err error) {
	c := &nfaCompiler{byteMemo: map[[3]uint32]uint32{}}
	starts := make([]uint32, 0, len(rules))
	for i, re := range rules {
		m := c.add(nfaInst{op: nfaMatch, rule: int32(i)})
		clear(c.byteMemo) // memo entries are only shared within one rule
		starts = append(starts, c.compile(re, m))
		if c.err != nil {
			return nil, 0, &tooLargeError{rule: i}
		}
	}
	start = c.alts(starts)
	if c.err != nil {
		return nil, 0, &tooLargeError{rule: len(rules) - 1}
	}
	return c.inst, start, nil
}

// State flags: what the byte before a position says about it.
const (
	atTextStart uint8 = 1 << iota // position 0
	atLineStart                   // position 0 or after '\n'
	afterWord                     // the previous byte is an ASCII word byte
)

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// conds is the set of empty-width assertions that hold between a byte
// before with the given state flags and the byte c (end: no byte, the end
// of the text).
func conds(flags uint8, c byte, end bool) syntax.EmptyOp {
	var op syntax.EmptyOp
	if flags&atTextStart != 0 {
		op |= syntax.EmptyBeginText
	}
	if flags&atLineStart != 0 {
		op |= syntax.EmptyBeginLine
	}
	nextWord := false
	if end {
		op |= syntax.EmptyEndText | syntax.EmptyEndLine
	} else {
		nextWord = isWordByte(c)
		if c == '\n' {
			op |= syntax.EmptyEndLine
		}
	}
	if (flags&afterWord != 0) != nextWord {
		op |= syntax.EmptyWordBoundary
	} else {
		op |= syntax.EmptyNoWordBoundary
	}
	return op
}

// lookahead are the assertions that depend on the byte after a position.
const lookahead = syntax.EmptyEndLine | syntax.EmptyEndText | syntax.EmptyWordBoundary | syntax.EmptyNoWordBoundary

// dinfo is what a DFA state is: the NFA instructions alive at a position
// (byte instructions waiting for a byte, assertions waiting for the next
// byte, and match instructions reached on the way in), and the flags of
// the byte before. Everything but end is immutable once published.
type dinfo struct {
	pcs   []uint32
	flags uint8
	// match lists the rules whose match instruction was reached on the way
	// into this state.
	match []int32
	// end holds the rules that match at the end of the text after this
	// state (nil: not computed yet).
	end atomic.Pointer[[]int32]
}

// dstate is a cached DFA state: its transitions by byte, built on first
// use. The table is indexed by the byte itself (not its class) so that a
// step of the scan is one dependent load.
type dstate struct {
	next     [256]atomic.Pointer[dstate]
	hasMatch bool
	info     *dinfo
	gen      *dfaCache
}

// dfaCache is one generation of built states. When it exceeds its memory
// budget a new, empty generation replaces it; scans still walking the old
// one finish without caching.
type dfaCache struct {
	states map[string]*dstate
	used   int
	start  *dstate
}

// dfa is a lazily built DFA over a compiled rule set. It is safe for
// concurrent use: transitions are read with atomic loads and built under
// mu.
type dfa struct {
	insts  []nfaInst
	start  uint32
	nrules int
	// classes maps a byte to its equivalence class: bytes of one class
	// behave alike in every instruction and assertion, so one built
	// transition serves the whole class.
	classes [256]uint8
	nclass  int
	budget  int
	// starts caches, by the flags of the byte before and the class of the
	// next byte, what the unanchored start contributes to the next state:
	// every rule may begin at every position, so rather than carry the
	// start's instructions in every state (hundreds, for a hundred rules)
	// each step adds this precomputed list. Built on first use.
	starts [8][]atomic.Pointer[[]uint32]
	// startEnd is, by flags, the rules that match the empty text at the end.
	startEnd [8]atomic.Pointer[[]int32]

	mu    sync.Mutex
	cache atomic.Pointer[dfaCache]
	work  *dfaWork // scratch for building states (mu held)
	pool  sync.Pool
}

// dfaCacheBudget bounds the memory of one generation of cached states
// (about 2 KiB each plus their instruction lists).
const dfaCacheBudget = 16 << 20

// newDFA prepares the DFA of a compiled program.
func newDFA(insts []nfaInst, start uint32, nrules int) *dfa {
	d := &dfa{insts: insts, start: start, nrules: nrules, budget: dfaCacheBudget}
	var cut [257]bool
	cut[0] = true
	mark := func(lo, hi int) { cut[lo], cut[hi+1] = true, true }
	for _, in := range insts {
		if in.op == nfaByte {
			mark(int(in.lo), int(in.hi))
		}
	}
	mark('\n', '\n')
	mark('0', '9')
	mark('A', 'Z')
	mark('_', '_')
	mark('a', 'z')
	n := -1
	for b := range 256 {
		if cut[b] {
			n++
		}
		d.classes[b] = uint8(n)
	}
	d.nclass = n + 1
	for f := range d.starts {
		d.starts[f] = make([]atomic.Pointer[[]uint32], d.nclass)
	}
	d.work = d.newWork()
	d.pool.New = func() any { return d.newWork() }
	d.reset()
	return d
}

// reset starts a new, empty generation of cached states (mu held, or
// before d is shared).
func (d *dfa) reset() *dfaCache {
	g := &dfaCache{states: map[string]*dstate{}}
	w := d.work
	w.q.clear() // the start state: no thread under way (the start is implicit)
	g.start = d.publishCached(g, w, atTextStart|atLineStart)
	d.cache.Store(g) // published whole: scans load g.start without the lock
	return g
}

// dfaWork is scratch space for computing a state.
type dfaWork struct {
	q, r sparseSet
	stk  []uint32
	key  []byte
}

func (d *dfa) newWork() *dfaWork {
	n := uint32(len(d.insts))
	return &dfaWork{q: newSparseSet(n), r: newSparseSet(n)}
}

// addCreate adds pc and what it leads to without consuming a byte, as a
// new state is built: assertions on the byte before are decided from flags,
// assertions on the byte after are kept for the next step.
func (w *dfaWork) addCreate(insts []nfaInst, pc uint32, flags uint8) {
	known := conds(flags, 0, false) &^ lookahead
	w.stk = append(w.stk[:0], pc)
	for len(w.stk) > 0 {
		pc := w.stk[len(w.stk)-1]
		w.stk = w.stk[:len(w.stk)-1]
		if !w.q.add(pc) {
			continue
		}
		in := &insts[pc]
		switch in.op {
		case nfaSplit:
			w.stk = append(w.stk, in.out1, in.out)
		case nfaEmpty:
			switch {
			case in.cond&lookahead != 0: // kept in the state, decided at the next byte
			case in.cond&known != 0:
				w.stk = append(w.stk, in.out)
			}
		}
	}
}

// addFull follows the waiting assertions of a state once the next byte
// (or the end) is known: w.r gets the byte and match instructions alive.
func (w *dfaWork) addFull(insts []nfaInst, pcs []uint32, op syntax.EmptyOp) {
	w.stk = append(w.stk[:0], pcs...)
	for len(w.stk) > 0 {
		pc := w.stk[len(w.stk)-1]
		w.stk = w.stk[:len(w.stk)-1]
		if !w.r.add(pc) {
			continue
		}
		in := &insts[pc]
		switch in.op {
		case nfaSplit:
			w.stk = append(w.stk, in.out1, in.out)
		case nfaEmpty:
			if in.cond&op != 0 {
				w.stk = append(w.stk, in.out)
			}
		}
	}
}

// stepInto computes, in w.q, the instructions of the state after the one
// of pcs and flags on byte c, and returns its flags.
func (d *dfa) stepInto(w *dfaWork, pcs []uint32, flags uint8, c byte) uint8 {
	nf := flagsAfter(c)
	w.r.clear()
	w.addFull(d.insts, pcs, conds(flags, c, false))
	w.q.clear()
	// Matches reached only now (through an assertion on c) belong to the
	// new state; those already in pcs were counted when it was entered.
	for _, pc := range w.r.dense {
		in := &d.insts[pc]
		switch in.op {
		case nfaByte:
			if in.lo <= c && c <= in.hi {
				w.addCreate(d.insts, in.out, nf)
			}
		case nfaMatch:
			if !slices.Contains(pcs, pc) {
				w.q.add(pc)
			}
		}
	}
	for _, pc := range d.startStep(flags, c) { // unanchored: a match may start anywhere
		w.q.add(pc)
	}
	return nf
}

// flagsAfter are the state flags after byte c.
func flagsAfter(c byte) uint8 {
	var nf uint8
	if c == '\n' {
		nf |= atLineStart
	}
	if isWordByte(c) {
		nf |= afterWord
	}
	return nf
}

// startStep is what a match beginning just before c adds to the state after
// c, given the flags of the byte before: the instructions reached by
// stepping the start's closure over c, and the rules that match the empty
// text before c.
func (d *dfa) startStep(flags uint8, c byte) []uint32 {
	slot := &d.starts[flags][d.classes[c]]
	if p := slot.Load(); p != nil {
		return *p
	}
	w := d.pool.Get().(*dfaWork)
	defer d.pool.Put(w)
	w.r.clear()
	w.q.clear()
	nf := flagsAfter(c)
	w.addFull(d.insts, []uint32{d.start}, conds(flags, c, false))
	for _, pc := range w.r.dense {
		switch in := &d.insts[pc]; in.op {
		case nfaByte:
			if in.lo <= c && c <= in.hi {
				w.addCreate(d.insts, in.out, nf)
			}
		case nfaMatch:
			w.q.add(pc)
		}
	}
	out := slices.Clone(d.canonical(w, nf))
	slot.Store(&out)
	return out
}

// canonical reduces the instructions in w.q to those that matter for what
// follows (byte, pending assertion and match instructions, sorted) and
// builds their key in w.key.
func (d *dfa) canonical(w *dfaWork, flags uint8) []uint32 {
	pcs := w.q.dense
	keep := pcs[:0]
	for _, pc := range pcs {
		switch in := &d.insts[pc]; in.op {
		case nfaByte, nfaMatch:
			keep = append(keep, pc)
		case nfaEmpty:
			if in.cond&lookahead != 0 {
				keep = append(keep, pc)
			}
		}
	}
	slices.Sort(keep)
	w.q.dense = keep // w.q is cleared before its next use
	w.key = append(w.key[:0], flags)
	for _, pc := range keep {
		w.key = append(w.key, byte(pc), byte(pc>>8), byte(pc>>16), byte(pc>>24))
	}
	return keep
}

func (d *dfa) newInfo(keep []uint32, flags uint8) *dinfo {
	in := &dinfo{pcs: slices.Clone(keep), flags: flags}
	for _, pc := range keep {
		if d.insts[pc].op == nfaMatch {
			in.match = append(in.match, d.insts[pc].rule)
		}
	}
	return in
}

// publishCached returns the state of generation g with the instructions in
// w.q, building it while the budget allows (nil: the budget is spent).
func (d *dfa) publishCached(g *dfaCache, w *dfaWork, flags uint8) *dstate {
	keep := d.canonical(w, flags)
	if s, ok := g.states[string(w.key)]; ok {
		return s
	}
	cost := 2200 + 8*len(keep) + len(w.key)
	if g.start != nil && g.used+cost > d.budget {
		return nil
	}
	info := d.newInfo(keep, flags)
	s := &dstate{info: info, hasMatch: len(info.match) > 0, gen: g}
	g.used += cost
	g.states[string(w.key)] = s
	return s
}

// step returns the state after s on byte c, building it and its
// transition when needed; nil when the cache generation of s was replaced
// (then the scan goes on uncached).
func (d *dfa) step(s *dstate, c byte) *dstate {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := s.next[c].Load(); t != nil {
		return t
	}
	g := d.cache.Load()
	if s.gen != g {
		return nil
	}
	w := d.work
	nf := d.stepInto(w, s.info.pcs, s.info.flags, c)
	t := d.publishCached(g, w, nf)
	if t == nil {
		d.reset() // full: s belongs to the old generation now
		return nil
	}
	cl := d.classes[c]
	for b := range 256 {
		if d.classes[b] == cl {
			s.next[b].Store(t)
		}
	}
	return t
}

// stepUncached computes the state after in on byte c without the cache.
func (d *dfa) stepUncached(in *dinfo, c byte) *dinfo {
	w := d.pool.Get().(*dfaWork)
	nf := d.stepInto(w, in.pcs, in.flags, c)
	t := d.newInfo(d.canonical(w, nf), nf)
	d.pool.Put(w)
	return t
}

// endMatches returns the rules that match at the end of the text after in.
func (d *dfa) endMatches(in *dinfo) []int32 {
	if p := in.end.Load(); p != nil {
		return *p
	}
	w := d.pool.Get().(*dfaWork)
	w.r.clear()
	w.addFull(d.insts, in.pcs, conds(in.flags, 0, true))
	out := slices.Clone(d.startEndMatches(in.flags))
	for _, pc := range w.r.dense {
		if x := &d.insts[pc]; x.op == nfaMatch {
			out = append(out, x.rule)
		}
	}
	d.pool.Put(w)
	in.end.Store(&out)
	return out
}

// startEndMatches returns the rules that match the empty text at the end of
// the text, given the flags of its last byte.
func (d *dfa) startEndMatches(flags uint8) []int32 {
	slot := &d.startEnd[flags]
	if p := slot.Load(); p != nil {
		return *p
	}
	w := d.pool.Get().(*dfaWork)
	defer d.pool.Put(w)
	w.r.clear()
	w.addFull(d.insts, []uint32{d.start}, conds(flags, 0, true))
	out := []int32{}
	for _, pc := range w.r.dense {
		if x := &d.insts[pc]; x.op == nfaMatch {
			out = append(out, x.rule)
		}
	}
	slot.Store(&out)
	return out
}

// ruleSet collects the rules a scan found.
type ruleSet struct {
	found []bool
	n     int
}

func (r *ruleSet) note(rules []int32) {
	for _, x := range rules {
		if !r.found[x] {
			r.found[x] = true
			r.n++
		}
	}
}

// scan reports in found (one bool per rule) every rule that matches
// somewhere in text, and returns how many it found.
func (d *dfa) scan(text []byte, found []bool) int {
	rs := ruleSet{found: found}
	s := d.cache.Load().start
	rs.note(s.info.match)
	for i, c := range text {
		t := s.next[c].Load()
		if t == nil {
			if t = d.step(s, c); t == nil {
				return d.scanUncached(s.info, text[i:], &rs)
			}
		}
		s = t
		if s.hasMatch {
			rs.note(s.info.match)
			if rs.n == d.nrules {
				return rs.n
			}
		}
	}
	rs.note(d.endMatches(s.info))
	return rs.n
}

// scanUncached finishes a scan whose cache generation was replaced: each
// step is computed, none cached (linear still, at the cost of the NFA).
func (d *dfa) scanUncached(in *dinfo, text []byte, rs *ruleSet) int {
	for _, c := range text {
		in = d.stepUncached(in, c)
		rs.note(in.match)
		if rs.n == d.nrules {
			return rs.n
		}
	}
	rs.note(d.endMatches(in))
	return rs.n
}

// sparseSet is a set of instruction indices with O(1) add, membership and
// clear, iterated in insertion order.
type sparseSet struct {
	dense  []uint32
	sparse []uint32
}

func newSparseSet(n uint32) sparseSet {
	return sparseSet{dense: make([]uint32, 0, n), sparse: make([]uint32, n)}
}

// add adds x and reports whether it was new.
func (s *sparseSet) add(x uint32) bool {
	i := s.sparse[x]
	if i < uint32(len(s.dense)) && s.dense[i] == x {
		return false
	}
	s.sparse[x] = uint32(len(s.dense))
	s.dense = append(s.dense, x)
	return true
}

func (s *sparseSet) clear() { s.dense = s.dense[:0] }
