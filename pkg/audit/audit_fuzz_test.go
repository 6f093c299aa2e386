package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fuzzKey is the HMAC key of the keyed seeds and of resealed inputs.
var fuzzKey = []byte("fuzz-hmac-key-0123456789abcdef")

// fuzzTrail writes a short trail with the real writer (received, completed
// and admin records, a chain-break note) and returns the log and its .head.
func fuzzTrail(f testing.TB, key []byte) (log, head []byte) {
	cfg := testConfig(f)
	w, err := Open(cfg, Options{HMACKey: key, Registerer: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i, r := range []*Record{
		{Time: t0, Stage: StageReceived, RequestID: "r1", Key: "user1", Role: "user", Client: "10.0.0.7", Method: "POST", Path: "/v1/chat/completions", Model: "glm-4.7-flash", BytesIn: 120},
		{Time: t0, Stage: StageCompleted, RequestID: "r1", Key: "user1", Path: "/v1/chat/completions", Model: "glm-4.7-flash", Status: 200, PromptTokens: 10, CompletionTokens: 20, LatencyMS: 812.5, TTFTMS: 90, BytesOut: 900},
		{Time: t0, Stage: StageCompleted, RequestID: "r2", Key: "user2", Path: "/v1/chat/completions", Status: 429, Limit: "tpm", Error: "rate limited"},
		{Time: t0, Stage: StageCompleted, RequestID: "r3", Path: "/v1/models", Status: 401, Error: "invalid_api_key", LatencyMS: 1e300},
		{Time: t0, Stage: StageAdmin, Action: ActionChainBreak, Target: "audit.log", Error: "documented"},
		{Time: t0, Stage: StageAdmin, Action: "key.created", Target: "bob", Key: "admin"},
		{Time: t0, Stage: StageCompleted, RequestID: "r4", Path: "/v1/models", Status: 502, Error: "upstream down", LatencyMS: 1e300},
	} {
		r.Time = r.Time.Add(time.Duration(i) * time.Second)
		if err := w.Write(ctx, r); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	if log, err = os.ReadFile(cfg.Path); err != nil {
		f.Fatal(err)
	}
	head, _ = os.ReadFile(cfg.Path + headSuffix)
	return log, head
}

// refHashSep and refSum restate the chain's definition (line.go's comment)
// without the package's code: the hash covers the bytes before `,"hash":"`.
const refHashSep = `,"hash":"`

func refSum(canonical, key []byte) string {
	if key == nil {
		s := sha256.Sum256(canonical)
		return hex.EncodeToString(s[:])
	}
	m := hmac.New(sha256.New, key)
	m.Write(canonical)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// reseal recomputes the hash of every line that has the layout of a record
// (keyed with fuzzKey or plain, switching scheme at line split when split >
// 0), and with relink also rewrites each "prev" to the hash before it, so
// the fuzzer explores chains whose hashes are right.
func reseal(log []byte, keyed bool, split int, relink bool) []byte {
	lines := bytes.SplitAfter(log, []byte{'\n'})
	var out []byte
	prev := ""
	for i, l := range lines {
		nl := bytes.HasSuffix(l, []byte{'\n'})
		l = bytes.TrimSuffix(l, []byte{'\n'})
		j := bytes.LastIndex(l, []byte(refHashSep))
		if j >= 0 && bytes.HasSuffix(l, []byte(`"}`)) {
			canonical := bytes.Clone(l[:j])
			if k := bytes.LastIndex(canonical, []byte(`"prev":"`)); relink && k >= 0 && bytes.HasSuffix(canonical, []byte{'"'}) {
				canonical = append(append(canonical[:k+len(`"prev":"`)], prev...), '"')
			}
			var key []byte
			if keyed != (split > 0 && i >= split) {
				key = fuzzKey
			}
			prev = refSum(canonical, key)
			l = append(append(append(canonical, refHashSep...), prev...), `"}`...)
		}
		out = append(out, l...)
		if nl {
			out = append(out, '\n')
		}
	}
	return out
}

// refRecord is what the chain's definition says of one line.
type refRecord struct {
	ok        bool
	canonical []byte
	hash      string
	prev      string
}

func refParse(line []byte) refRecord {
	j := bytes.LastIndex(line, []byte(refHashSep))
	if j < 0 || !bytes.HasSuffix(line, []byte(`"}`)) || j+len(refHashSep) > len(line)-2 {
		return refRecord{}
	}
	h := string(line[j+len(refHashSep) : len(line)-2])
	hexPart := strings.TrimPrefix(h, "hmac-sha256:")
	if _, err := hex.DecodeString(hexPart); err != nil || len(hexPart) != 64 {
		return refRecord{}
	}
	var r struct{ Prev, Hash string }
	if json.Unmarshal(line, &r) != nil || r.Hash != h {
		return refRecord{}
	}
	return refRecord{ok: true, canonical: line[:j], hash: h, prev: r.Prev}
}

func hasFinding(fs []Finding, kind string, line int) bool {
	for _, f := range fs {
		if f.Kind == kind && (line < 0 || f.Line == line) {
			return true
		}
	}
	return false
}

// FuzzParseLine: parseLine accepts exactly the lines of the form
// canonical + `,"hash":"<hash>"}` that are JSON objects whose "hash" is that
// hash, and gives back those pieces; the stats/tail decoding of a record
// it accepts with a stage agrees on the chain fields.
func FuzzParseLine(f *testing.F) {
	for _, key := range [][]byte{nil, fuzzKey} {
		log, _ := fuzzTrail(f, key)
		for _, l := range bytes.Split(log, []byte{'\n'}) {
			f.Add(l)
		}
	}
	f.Add([]byte(`{"time":"x","hash":"` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte(`{"prev":"","hash":"","hash":"` + strings.Repeat("a", 64) + `"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		p, err := parseLine(line)
		p2, err2 := parseLine(line)
		if (err == nil) != (err2 == nil) || (err == nil && !reflect.DeepEqual(p, p2)) {
			t.Fatal("parseLine is not deterministic")
		}
		ref := refParse(line)
		if err != nil {
			if err != errBadLine {
				t.Fatalf("error %v, want errBadLine", err)
			}
			return
		}
		if !ref.ok {
			t.Fatalf("parseLine accepted a line that is not canonical + hash: %q", line)
		}
		if !bytes.Equal(p.canonical, ref.canonical) || p.hash != ref.hash || p.rec.Hash != p.hash || p.rec.Prev != ref.prev {
			t.Fatalf("parseLine pieces differ from the definition: %+v vs %+v", p, ref)
		}
		if !bytes.Equal(append(append(bytes.Clone(p.canonical), refHashSep...), p.hash+`"}`...), line) {
			t.Fatal("canonical + hash is not the line")
		}
		if keyed(p.hash) != strings.HasPrefix(p.hash, "hmac-sha256:") {
			t.Fatal("keyed disagrees with the prefix")
		}
		var r Record
		if json.Unmarshal(line, &r) == nil && r.Stage != "" {
			if r.Prev != p.rec.Prev || r.Hash != p.hash || r.Stage != p.rec.Stage || !r.Time.Equal(p.rec.Time) {
				t.Fatalf("stats/tail decoding differs from verify's: %+v vs %+v", r, p.rec)
			}
		}
	})
}

// Mode bits of FuzzVerify.
const (
	fvReseal   = 1 << iota // recompute hashes
	fvRelink               // and prev links
	fvKeyed                // reseal with fuzzKey
	fvGiveKey              // pass fuzzKey to Verify
	fvSplitBit             // bits 4..6: the line from which resealing switches scheme
)

// FuzzVerify: over any bytes (resealed or not, keyed or not, with any .head
// side file), Verify is deterministic, locates findings on lines the file
// has, counts no more records than lines, reads a .gz copy the same way,
// and reports the trail intact only when the chain's definition agrees:
// every complete line is a record whose hash it checked (or an "unkeyed"
// warning says it could not, or a "plain" one that the key does not cover
// it, and never after keyed records), every link holds or a documented
// break is warned about at that line, a partial last line is warned about,
// and the record the .head names is there.
func FuzzVerify(f *testing.F) {
	for _, key := range [][]byte{nil, fuzzKey} {
		log, head := fuzzTrail(f, key)
		mode := uint8(0)
		if key != nil {
			mode = fvKeyed | fvGiveKey
		}
		f.Add(log, head, mode)
		f.Add(log, []byte(nil), mode|fvReseal|fvRelink)
		f.Add(log[:len(log)-30], head, mode)                             // torn tail, cut records
		f.Add(log, head, mode&^fvGiveKey)                                // keyed, no key given
		f.Add(log, []byte(nil), uint8(fvReseal|fvRelink|fvGiveKey|3<<4)) // plain, then keyed
		f.Add(log, []byte(nil), uint8(fvReseal|fvRelink|fvKeyed|fvGiveKey|3<<4))
		lines := bytes.SplitAfter(log, []byte{'\n'})
		swapped := bytes.Join([][]byte{lines[0], lines[2], lines[1], lines[3]}, nil)
		f.Add(swapped, []byte(nil), mode)
	}
	f.Add([]byte("not json\n{}\n"), []byte(`{"hash":"x"}`), uint8(0))
	f.Add([]byte{}, []byte(`{"file":"audit.log","offset":0,"hash":"`+strings.Repeat("ab", 32)+`"}`), uint8(0))
	// One directory per fuzzing process (inputs run one at a time in it):
	// a temporary directory per input would cost more than the input.
	dir := f.TempDir()
	path := filepath.Join(dir, "audit.log")
	gz := filepath.Join(dir, "other", "audit.log.1.gz")
	if err := os.Mkdir(filepath.Dir(gz), 0o700); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, log, head []byte, mode uint8) {
		if mode&fvReseal != 0 {
			log = reseal(log, mode&fvKeyed != 0, int(mode>>4), mode&fvRelink != 0)
		}
		var opts VerifyOptions
		if mode&fvGiveKey != 0 {
			opts.HMACKey = fuzzKey
		}
		if err := os.WriteFile(path, log, 0o600); err != nil {
			t.Fatal(err)
		}
		if len(head) > 0 {
			if err := os.WriteFile(path+headSuffix, head, 0o600); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Remove(path + headSuffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		rep, err := Verify([]string{path}, opts)
		if err != nil {
			t.Fatalf("Verify of a readable file: %v", err)
		}
		rep2, _ := Verify([]string{path}, opts)
		if !reflect.DeepEqual(rep, rep2) {
			t.Fatalf("Verify is not deterministic:\n%+v\n%+v", rep, rep2)
		}

		pieces := bytes.SplitAfter(log, []byte{'\n'})
		if len(pieces) > 0 && len(pieces[len(pieces)-1]) == 0 {
			pieces = pieces[:len(pieces)-1]
		}
		nLines := len(pieces)
		torn := nLines > 0 && !bytes.HasSuffix(log, []byte{'\n'})
		complete := nLines
		if torn {
			complete--
		}
		if rep.Records > nLines {
			t.Fatalf("%d records in %d lines", rep.Records, nLines)
		}
		for _, fd := range append(append([]Finding{}, rep.Problems...), rep.Warnings...) {
			if fd.Line < 0 || fd.Line > nLines {
				t.Fatalf("finding on line %d of %d: %v", fd.Line, nLines, fd)
			}
		}

		// A .gz copy reads the same (the .head is only read for plain files).
		if len(head) == 0 {
			var zb bytes.Buffer
			zw := gzip.NewWriter(&zb)
			zw.Write(log)
			zw.Close()
			if err := os.WriteFile(gz, zb.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			zrep, err := Verify([]string{gz}, opts)
			if err != nil {
				t.Fatalf("Verify of a valid .gz: %v", err)
			}
			norm := func(r *VerifyReport, name string) string {
				b, _ := json.Marshal(struct {
					R    int
					P, W []Finding
				}{r.Records, r.Problems, r.Warnings})
				return strings.ReplaceAll(string(b), name, "F")
			}
			if a, b := norm(rep, path), norm(zrep, gz); a != b {
				t.Fatalf("plain and .gz copies differ:\n%s\n%s", a, b)
			}
		}

		if !rep.Intact() {
			return
		}
		// Intact: check the claim against the definition.
		var recs []refRecord
		for i := 0; i < complete; i++ {
			r := refParse(bytes.TrimSuffix(pieces[i], []byte{'\n'}))
			if !r.ok {
				t.Fatalf("intact, but line %d is not a record: %q", i+1, pieces[i])
			}
			recs = append(recs, r)
		}
		switch {
		case rep.Records == complete+1 && torn:
			r := refParse(pieces[nLines-1])
			if !r.ok {
				t.Fatalf("intact, counted the partial last line %q as a record", pieces[nLines-1])
			}
			recs = append(recs, r)
		case rep.Records != complete:
			t.Fatalf("intact with %d records in %d complete lines", rep.Records, complete)
		}
		if torn && !hasFinding(rep.Warnings, KindTorn, nLines) {
			t.Fatalf("intact, no warning about the partial last line %d", nLines)
		}
		sawKeyed := false
		for i, r := range recs {
			n := i + 1
			if strings.HasPrefix(r.hash, "hmac-sha256:") {
				sawKeyed = true
				if opts.HMACKey == nil {
					if !hasFinding(rep.Warnings, KindUnkeyed, -1) {
						t.Fatalf("intact, keyed line %d unchecked and no %q warning", n, KindUnkeyed)
					}
				} else if refSum(r.canonical, opts.HMACKey) != r.hash {
					t.Fatalf("intact, but line %d does not match its keyed hash", n)
				}
			} else {
				if refSum(r.canonical, nil) != r.hash {
					t.Fatalf("intact, but line %d does not match its hash", n)
				}
				if opts.HMACKey != nil && sawKeyed {
					t.Fatalf("intact, but line %d is plain SHA-256 after keyed records (rewritten without the key)", n)
				}
				if opts.HMACKey != nil && !hasFinding(rep.Warnings, KindPlain, -1) {
					t.Fatalf("intact, line %d is plain SHA-256 though a key was given, and no %q warning", n, KindPlain)
				}
			}
			if i > 0 && r.prev != recs[i-1].hash && !hasFinding(rep.Warnings, KindBreak, n) {
				t.Fatalf("intact, but line %d does not link to line %d and no break is warned about", n, n-1)
			}
		}
		var hd struct {
			Offset int64
			Hash   string
		}
		if len(head) > 0 && json.Unmarshal(head, &hd) == nil && hd.Hash != "" && validHash(hd.Hash) {
			found := hd.Offset == 0 && (len(recs) == 0 || hd.Hash == recs[0].prev)
			for _, r := range recs {
				found = found || r.hash == hd.Hash
			}
			if !found {
				t.Fatalf("intact, but the .head names %s, which no record has", hd.Hash)
			}
		}
	})
}

// FuzzReadStats: over any bytes, stats counts every line once (good or
// bad), its figures add up, are finite and encode as JSON (`audit stats
// --json`), and Tail returns the same records stats counted, the last n.
func FuzzReadStats(f *testing.F) {
	for _, key := range [][]byte{nil, fuzzKey} {
		log, _ := fuzzTrail(f, key)
		f.Add(log, uint8(3))
		f.Add(append(log, "not json\n{\"stage\":\"\"}\n{\"stage\":\"completed\",\"status\":\"x\"}"...), uint8(100))
	}
	f.Add([]byte(`{"stage":"completed","path":"/p","latency_ms":1e308}`+"\n"+`{"stage":"completed","path":"/p","latency_ms":1e308}`), uint8(1))
	f.Add([]byte(`{"stage":"completed","key":"a","status":400,"policy":[{"rule":"r","action":"reject"},{"rule":"w","action":"flag"},{"rule":"w","action":"flag"}]}`+"\n"+`{"stage":"completed","policy":[{"rule":"","action":"x"}]}`), uint8(2))
	path := filepath.Join(f.TempDir(), "audit.log")
	f.Fuzz(func(t *testing.T, log []byte, n uint8) {
		if err := os.WriteFile(path, log, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := ReadStats([]string{path}, time.Time{})
		if err != nil {
			t.Fatalf("ReadStats: %v", err)
		}
		lines := bytes.Count(log, []byte{'\n'})
		if len(log) > 0 && log[len(log)-1] != '\n' {
			lines++
		}
		if s.Lines != lines || s.BadLines > s.Lines || len(s.BadSamples) > min(5, s.BadLines) || len(s.BadFiles) != 0 {
			t.Fatalf("lines %d bad %d samples %d files %v for %d lines", s.Lines, s.BadLines, len(s.BadSamples), s.BadFiles, lines)
		}
		keyReq, keyRej, keyErr := 0, 0, 0
		for _, k := range s.Keys {
			keyReq += k.Requests
			keyRej += k.Rejected
			keyErr += k.Errors
		}
		if keyReq != s.Requests || keyRej != s.Rejected || keyErr != s.Errors || s.Rejected+s.Errors > s.Requests {
			t.Fatalf("figures do not add up: %+v", s)
		}
		calls := 0
		for p, ps := range s.Paths {
			calls += ps.Calls
			for _, v := range []float64{ps.AvgMS, ps.MaxMS, ps.MinMS} {
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					t.Fatalf("path %q: %+v", p, ps)
				}
			}
			if ps.MinMS > ps.AvgMS || ps.AvgMS > ps.MaxMS {
				t.Fatalf("path %q: min %g avg %g max %g", p, ps.MinMS, ps.AvgMS, ps.MaxMS)
			}
		}
		if calls != s.Requests {
			t.Fatalf("%d calls by path, %d requests", calls, s.Requests)
		}
		for _, pc := range []Percentiles{s.LatencyMS, s.TTFTMS} {
			if !(pc.P50 <= pc.P95 && pc.P95 <= pc.P99 && pc.P99 <= pc.Max) {
				t.Fatalf("percentiles out of order: %+v", pc)
			}
		}
		if math.IsNaN(s.ErrorRate) || s.ErrorRate < 0 || s.ErrorRate > 1 {
			t.Fatalf("error rate %g", s.ErrorRate)
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("stats do not encode as JSON: %v", err)
		}
		var text bytes.Buffer
		if err := s.WriteText(&text); err != nil {
			t.Fatal(err)
		}

		all, err := Tail([]string{path}, math.MaxInt, Filter{})
		if err != nil {
			t.Fatalf("Tail: %v", err)
		}
		if len(all) != s.Lines-s.BadLines {
			t.Fatalf("Tail found %d records, stats %d", len(all), s.Lines-s.BadLines)
		}
		last, err := Tail([]string{path}, int(n), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if want := all[max(0, len(all)-int(n)):]; !reflect.DeepEqual(last, want) && !(len(last) == 0 && len(want) == 0) {
			t.Fatalf("Tail(%d) is not the last %d of %d records", n, n, len(all))
		}
		for _, r := range all {
			if r.Stage == "" {
				t.Fatal("Tail returned a record without a stage")
			}
			_ = FormatRecord(&r)
		}
	})
}

// TestVerifyKeyedChainRewrittenPlain is the regression test of a
// FuzzVerify finding: with the HMAC key given, a keyed trail whose tail was
// rewritten with plain SHA-256 hashes (which anyone can compute) was
// reported intact without a word, and so was a wholly plain trail.
func TestVerifyKeyedChainRewrittenPlain(t *testing.T) {
	path, lines := tamperTrail(t, Options{HMACKey: fuzzKey})
	// The attacker edits record 6 and rehashes it and every later one
	// plainly, keeping the links.
	lines[5] = strings.Replace(lines[5], `"key":"user1"`, `"key":"admin"`, 1)
	log := reseal([]byte(strings.Join(lines, "\n")+"\n"), true, 5, true)
	if err := os.WriteFile(path, log, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(path + headSuffix)
	rep := mustVerify(t, []string{path}, VerifyOptions{HMACKey: fuzzKey})
	if rep.Intact() || rep.Problems[0].Kind != KindEdited || rep.Problems[0].Line != 6 {
		t.Fatalf("keyed chain rewritten plain: %+v", rep)
	}

	// A wholly plain trail checked with a key: intact, with a warning.
	path, _ = tamperTrail(t, Options{})
	rep = mustVerify(t, []string{path}, VerifyOptions{HMACKey: fuzzKey})
	if !rep.Intact() || len(rep.Warnings) != 1 || rep.Warnings[0].Kind != KindPlain || rep.Warnings[0].Line != 1 {
		t.Fatalf("plain trail with a key: %+v", rep)
	}
}

// TestStatsHugeLatencies is the regression test of a FuzzReadStats
// finding: two latencies near the float64 maximum on one path made its
// average +Inf, and `glmctl audit stats --json` failed to encode the report.
func TestStatsHugeLatencies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	line := `{"stage":"completed","path":"/p","latency_ms":1.5e308}` + "\n"
	if err := os.WriteFile(path, []byte(line+line+strings.Replace(line, "1.5e308", "1.7e308", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ReadStats([]string{path}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Paths["/p"]; p.AvgMS < 1.5e308 || p.AvgMS > 1.7e308 {
		t.Fatalf("average %g", p.AvgMS)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Fatalf("report does not encode: %v", err)
	}
}

// TestVerifyHeadWithDamagedTime is the regression test of a FuzzVerify
// finding: a .head whose "time" (or "file") did not parse was unreadable as
// a whole, so verify only warned and skipped the check for a cut tail.
func TestVerifyHeadWithDamagedTime(t *testing.T) {
	path, lines := tamperTrail(t, Options{})
	writeLines(t, path, lines[:8]) // the last two records cut off
	b, err := os.ReadFile(path + headSuffix)
	if err != nil {
		t.Fatal(err)
	}
	var hd map[string]any
	if err := json.Unmarshal(b, &hd); err != nil {
		t.Fatal(err)
	}
	hd["time"], hd["file"] = "2026-11-30T01:16:59.f252375Z", 7
	b, _ = json.Marshal(hd)
	if err := os.WriteFile(path+headSuffix, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, []string{path}, VerifyOptions{})
	if rep.Intact() || rep.Problems[0].Kind != KindTruncated {
		t.Fatalf("cut tail with a damaged .head time: %+v", rep)
	}
}
