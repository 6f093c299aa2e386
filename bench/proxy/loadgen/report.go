package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// Measure names bench.sh gives (-measure) and the report reads.
const (
	mChat     = "chat64"    // non-stream chat, 64 connections, closed loop
	mSerial   = "serial"    // one request at a time
	mStream   = "stream256" // 256 concurrent streams
	mHold     = "hold1000"  // 1,000 open slow streams
	mHoldBig  = "hold10k"   // 10,000 open slow streams (or as many as descriptors allow)
	mOpen     = "open"      // open loop at a fixed rate
	pDirect   = "direct"
	pNginx    = "nginx"
	pGlmctl   = "glmctl"
	pNoAudit  = "glmctl-noaudit"
	bigTarget = 10000
	bigLimit  = 512 * 1024 // KiB
)

// labels are the sizes the row names give.
var labels = struct{ conns, streams, open int }{64, 256, 1000}

var chartPaths = []string{pDirect, pNginx, pGlmctl}

// results indexes result lines by measure and path.
type results struct {
	all []Result
	by  map[string]map[string][]Result
}

func readResults(r io.Reader) (*results, error) {
	rs := &results{by: map[string]map[string][]Result{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var x Result
		if err := json.Unmarshal([]byte(line), &x); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		rs.all = append(rs.all, x)
		if rs.by[x.Measure] == nil {
			rs.by[x.Measure] = map[string][]Result{}
		}
		rs.by[x.Measure][x.Path] = append(rs.by[x.Measure][x.Path], x)
	}
	return rs, sc.Err()
}

// vals are one figure over the repetitions.
type vals []float64

func (rs *results) get(measure, path string, f func(Result) float64) vals {
	var v vals
	for _, r := range rs.by[measure][path] {
		v = append(v, f(r))
	}
	return v
}

func (v vals) ok() bool { return len(v) > 0 }

func (v vals) median() float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (v vals) span() (float64, float64) {
	return slices.Min(v), slices.Max(v)
}

// num formats a figure with about three significant digits.
func num(x float64) string {
	if math.IsNaN(x) {
		return "?"
	}
	for _, f := range []struct {
		min    float64
		format string
	}{{99.95, "%.0f"}, {9.995, "%.1f"}, {0.9995, "%.2f"}} {
		if math.Abs(x) >= f.min {
			return fmt.Sprintf(f.format, x)
		}
	}
	return fmt.Sprintf("%.3f", x)
}

// kilo formats a rate: 31 200 → "31.2 k".
func kilo(x float64) string {
	if math.Abs(x) >= 999.5 {
		return num(x/1000) + " k"
	}
	return num(x)
}

// cell is "median (min–max)", or the one value.
func cell(v vals, f func(float64) string, prefix string) string {
	if !v.ok() {
		return "–"
	}
	s := prefix + f(v.median())
	if len(v) > 1 {
		lo, hi := v.span()
		if f(lo) != f(hi) {
			s += fmt.Sprintf(" (%s–%s)", f(lo), f(hi))
		}
	}
	return s
}

func ratio(a, b vals) string {
	if !a.ok() || !b.ok() || b.median() == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a.median()/b.median())
}

// pairedRatio is the median over repetitions of a's value ÷ b's value in
// the same repetition: on a machine whose load changes from minute to
// minute, the ratio within one repetition is steadier than either figure.
// Without common repetitions it is the ratio of the medians.
func (rs *results) pairedRatio(measure, a, b string, f func(Result) float64) string {
	av, bv := rs.byRep(measure, a, f), rs.byRep(measure, b, f)
	var q vals
	for rep, x := range av {
		if y, ok := bv[rep]; ok && y != 0 {
			q = append(q, x/y)
		}
	}
	if len(q) == 0 {
		return ratio(rs.get(measure, a, f), rs.get(measure, b, f))
	}
	s := fmt.Sprintf("%.2f×", q.median())
	if len(q) > 1 {
		lo, hi := q.span()
		if fmt.Sprintf("%.2f", lo) != fmt.Sprintf("%.2f", hi) {
			s += fmt.Sprintf(" (%.2f–%.2f)", lo, hi)
		}
	}
	return s
}

// byRep is one figure keyed by repetition.
func (rs *results) byRep(measure, path string, f func(Result) float64) map[int]float64 {
	m := map[int]float64{}
	for _, r := range rs.by[measure][path] {
		m[r.Rep] = f(r)
	}
	return m
}

// sub is a − b, pairwise by repetition when both have the same number of
// values (the same runs), else each value of a minus b's median.
func sub(a, b vals) vals {
	if !a.ok() || !b.ok() {
		return nil
	}
	out := make(vals, len(a))
	for i := range a {
		if len(a) == len(b) {
			out[i] = a[i] - b[i]
		} else {
			out[i] = a[i] - b.median()
		}
	}
	return out
}

var (
	perSec = func(r Result) float64 { return r.PerSec }
	cpuReq = func(r Result) float64 { return r.ProxyCPUUsPerReq }
	p50    = func(r Result) float64 { return r.LatP50 }
	p99    = func(r Result) float64 { return r.LatP99 }
	ttfb50 = func(r Result) float64 { return r.TTFBP50 }
	kibPer = func(r Result) float64 { return r.KiBPerStream }
)

// mainTable writes the table of issue 12's rows.
func (rs *results) mainTable(w io.Writer) {
	fmt.Fprintln(w, "| measure | direct | nginx | glmctl | glmctl ÷ nginx | glmctl ÷ direct |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	row := func(name string, f func(Result) float64, measure string, format func(float64) string, withDirect bool) {
		d, n, g := rs.get(measure, pDirect, f), rs.get(measure, pNginx, f), rs.get(measure, pGlmctl, f)
		if !withDirect {
			d = nil
		}
		rd := "–"
		if withDirect {
			rd = rs.pairedRatio(measure, pGlmctl, pDirect, f)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, cell(d, format, ""), cell(n, format, ""), cell(g, format, ""),
			rs.pairedRatio(measure, pGlmctl, pNginx, f), rd)
	}
	row(fmt.Sprintf("non-stream chat, %d connections, req/s", labels.conns), perSec, mChat, kilo, true)
	row("CPU per request in the proxy process, µs", cpuReq, mChat, num, false)

	// One request at a time: the direct latency, and what each proxy adds.
	for _, q := range []struct {
		name string
		f    func(Result) float64
	}{{"p50", p50}, {"p99", p99}} {
		d := rs.get(mSerial, pDirect, q.f)
		n, g := rs.get(mSerial, pNginx, q.f), rs.get(mSerial, pGlmctl, q.f)
		an, ag := sub(n, d), sub(g, d)
		fmt.Fprintf(w, "| one request at a time, latency %s, ms (proxies: added over direct) | %s | %s | %s | %s | %s |\n",
			q.name, cell(d, num, ""), cell(an, num, "+"), cell(ag, num, "+"), ratio(ag, an), ratio(g, d))
	}
	row(fmt.Sprintf("%d concurrent streams (64 tokens, 1 ms apart), streams/s", labels.streams), perSec, mStream, kilo, true)
	row("CPU per stream in the proxy process, µs", cpuReq, mStream, num, false)
	row(fmt.Sprintf("time to first byte p50 at %d streams, ms", labels.streams), ttfb50, mStream, num, true)
	row(fmt.Sprintf("memory per open stream, %d open (RSS growth ÷ streams), KiB", labels.open), kibPer, mHold, num, false)

	// 10,000 open streams.
	big := func(path string) string {
		rr := rs.by[mHoldBig][path]
		if len(rr) == 0 {
			return "–"
		}
		r := rr[len(rr)-1]
		if r.Open == 0 {
			return "not run: " + firstLine(r.ErrorSample)
		}
		est := float64(r.RSSOpenKiB)
		note := ""
		if r.Open < bigTarget {
			est = float64(r.RSSIdleKiB) + r.KiBPerStream*bigTarget
			note = fmt.Sprintf(", %d open, extrapolated", r.Open)
		}
		fits := "yes"
		if est > bigLimit {
			fits = "no"
		}
		return fmt.Sprintf("%s MiB (%s%s)", num(est/1024), fits, note)
	}
	fmt.Fprintf(w, "| 10,000 open streams: proxy RSS, MiB (fits in 512 MiB?) | – | %s | %s | – | – |\n", big(pNginx), big(pGlmctl))

	on, off := rs.get(mChat, pGlmctl, perSec), rs.get(mChat, pNoAudit, perSec)
	audit := "–"
	if on.ok() && off.ok() {
		audit = fmt.Sprintf("on %s, off %s: %+.0f %%", kilo(on.median()), kilo(off.median()), 100*(on.median()/off.median()-1))
		if len(on) == len(off) && len(on) > 1 {
			d := make(vals, len(on))
			for i := range on {
				d[i] = 100 * (on[i]/off[i] - 1)
			}
			lo, hi := d.span()
			audit += fmt.Sprintf(" (%+.0f to %+.0f %% per repetition)", lo, hi)
		}
	}
	fmt.Fprintf(w, "| audit on vs off (glmctl), req/s | – | – | %s | – | – |\n", audit)
}

// harnessTable shows where the CPU went: the load generator's own share,
// the proxy's, and how busy the whole machine was.
func (rs *results) harnessTable(w io.Writer) {
	fmt.Fprintln(w, "| measure | path | load generator, µs CPU per request | load generator, cores | proxy, cores | whole machine busy | errors |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, m := range []string{mChat, mSerial, mStream} {
		for _, p := range []string{pDirect, pNginx, pGlmctl, pNoAudit} {
			rr := rs.by[m][p]
			if len(rr) == 0 {
				continue
			}
			get := func(f func(Result) float64) vals { return rs.get(m, p, f) }
			proxy := "–"
			if p != pDirect {
				proxy = cell(get(func(r Result) float64 { return r.ProxyCPUShare }), num, "")
			}
			var errs int64
			for _, r := range rr {
				errs += r.Errors
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d |\n", m, p,
				cell(get(func(r Result) float64 { return r.ClientCPUUsPerReq }), num, ""),
				cell(get(func(r Result) float64 { return r.ClientCPUShare }), num, ""),
				proxy,
				cell(get(func(r Result) float64 { return 100 * r.MachineBusy }), func(x float64) string { return fmt.Sprintf("%.0f %%", x) }, ""),
				errs)
		}
	}
}

// openRows are the open-loop results, one per path and rate (the median of
// repetitions, if any).
type openRow struct {
	path                   string
	rate, achieved         float64
	p50, p99, svc50, svc99 float64
	errors, unsent         int64
}

func (rs *results) openRows() []openRow {
	var out []openRow
	for _, p := range append(slices.Clone(chartPaths), pNoAudit) {
		byRate := map[float64][]Result{}
		for _, r := range rs.by[mOpen][p] {
			byRate[r.Rate] = append(byRate[r.Rate], r)
		}
		var rates []float64
		for k := range byRate {
			rates = append(rates, k)
		}
		sort.Float64s(rates)
		for _, rate := range rates {
			rr := byRate[rate]
			med := func(f func(Result) float64) float64 {
				var v vals
				for _, r := range rr {
					v = append(v, f(r))
				}
				return v.median()
			}
			row := openRow{path: p, rate: rate, achieved: med(perSec), p50: med(p50), p99: med(p99),
				svc50: med(func(r Result) float64 { return r.SvcP50 }), svc99: med(func(r Result) float64 { return r.SvcP99 })}
			for _, r := range rr {
				row.errors += r.Errors
				row.unsent += r.Unsent
			}
			out = append(out, row)
		}
	}
	return out
}

func (rs *results) openTable(w io.Writer, rows []openRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "| offered req/s | path | achieved req/s | p50 ms | p99 ms | errors | unsent |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	sorted := slices.Clone(rows)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].rate < sorted[j].rate })
	for _, r := range sorted {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d | %d |\n", kilo(r.rate), r.path, kilo(r.achieved), num(r.p50), num(r.p99), r.errors, r.unsent)
	}
}

func writeCSV(path string, rows []openRow) error {
	var b strings.Builder
	b.WriteString("path,offered_rps,achieved_rps,p50_ms,p99_ms,service_p50_ms,service_p99_ms,errors,unsent\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "%s,%.0f,%.1f,%.4f,%.4f,%.4f,%.4f,%d,%d\n", r.path, r.rate, r.achieved, r.p50, r.p99, r.svc50, r.svc99, r.errors, r.unsent)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "results (JSON lines) to read (required)")
	md := fs.String("md", "", "write the Markdown report here too (it always goes to stdout)")
	header := fs.String("header", "", "Markdown to put before the tables (file)")
	csvPath := fs.String("csv", "", "write the open-loop results as CSV here")
	svgPath := fs.String("svg", "", "write the latency-versus-load chart (SVG) here")
	note := fs.String("note", "", "a line of small print under the chart's title")
	fs.IntVar(&labels.conns, "conns", 64, "connections of the chat measure (for the row names)")
	fs.IntVar(&labels.streams, "streams", 256, "concurrent streams of the stream measure (for the row names)")
	fs.IntVar(&labels.open, "open-streams", 1000, "open streams of the memory measure (for the row names)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("-in is required")
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	rs, err := readResults(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	var b strings.Builder
	if *header != "" {
		h, err := os.ReadFile(*header)
		if err != nil {
			return err
		}
		b.Write(h)
		b.WriteString("\n")
	}
	rs.mainTable(&b)
	b.WriteString("\nFigures: the median over the repetitions, (min–max) after it. Ratios: the median of the ratios within each repetition (min–max); for the one-at-a-time latency rows, the ratio of the medians — ÷ nginx of the added latency, ÷ direct of the total.\n\n")
	b.WriteString("Where the CPU went (the load generator shares the machine with the proxy and the stand-in upstream):\n\n")
	rs.harnessTable(&b)
	rows := rs.openRows()
	if len(rows) > 0 {
		b.WriteString("\nOpen loop, non-stream chat at fixed rates (latency from the scheduled time of a request that had to wait for a free connection, else from its write; medians over the repetitions):\n\n")
		rs.openTable(&b, rows)
	}
	var errs int64
	for _, r := range rs.all {
		errs += r.Errors
	}
	if errs > 0 {
		fmt.Fprintf(&b, "\n**%d requests failed** — see the errors column and the JSON lines.\n", errs)
	}
	out := b.String()
	fmt.Print(out)
	if *md != "" {
		if err := os.WriteFile(*md, []byte(out), 0o644); err != nil {
			return err
		}
	}
	if *csvPath != "" && len(rows) > 0 {
		if err := writeCSV(*csvPath, rows); err != nil {
			return err
		}
	}
	if *svgPath != "" && len(rows) > 0 {
		if err := os.WriteFile(*svgPath, []byte(chartSVG(rows, *note)), 0o644); err != nil {
			return err
		}
	}
	if errs > 0 {
		return fmt.Errorf("%d requests failed", errs)
	}
	return nil
}
