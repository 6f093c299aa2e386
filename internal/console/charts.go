package console

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"
)

// Charts are SVG drawn here, sized by the stylesheet; colours come from
// classes (.s0, .s1, …), never from style attributes (the CSP forbids
// inline style).
const (
	chartW = 300.0
	chartH = 64.0
)

// chartSeries is one line of a chart.
type chartSeries struct {
	Name  string
	Class string // s0..s4
	pts   []point
	Last  string // the latest value, formatted
}

// chart is a small line chart over a time window.
type chart struct {
	Title  string
	Unit   string
	Max    string // the top of the y axis, formatted
	Series []chartSeries
	SVG    template.HTML
}

// lineChart draws the series over [from, to]; the y axis runs from 0 to the
// largest value (at least minMax); format renders values for the labels.
func lineChart(title, unit string, from, to time.Time, minMax float64, format func(float64) string, series ...chartSeries) chart {
	top := minMax
	for _, s := range series {
		for _, p := range s.pts {
			if !math.IsNaN(p.v) && !math.IsInf(p.v, 0) && p.v > top {
				top = p.v
			}
		}
	}
	if top <= 0 {
		top = 1
	}
	span := to.Sub(from).Seconds()
	if span <= 0 {
		span = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" preserveAspectRatio="none" role="img" aria-label="%s">`,
		chartW, chartH, html.EscapeString(title))
	for _, y := range []float64{0, chartH / 2, chartH} {
		fmt.Fprintf(&b, `<line class="grid" x1="0" x2="%g" y1="%.1f" y2="%.1f"/>`, chartW, clampY(y), clampY(y))
	}
	for _, s := range series {
		for _, seg := range segments(s.pts) {
			var pts []string
			for _, p := range seg {
				x := (p.at.Sub(from).Seconds() / span) * chartW
				if x < 0 || x > chartW {
					continue
				}
				y := chartH - (p.v/top)*chartH
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, clampY(y)))
			}
			switch len(pts) {
			case 0:
			case 1:
				xy := strings.Split(pts[0], ",")
				fmt.Fprintf(&b, `<circle class="line %s" cx="%s" cy="%s" r="1.5"/>`, s.Class, xy[0], xy[1])
			default:
				fmt.Fprintf(&b, `<polyline class="line %s" vector-effect="non-scaling-stroke" points="%s"/>`,
					s.Class, strings.Join(pts, " "))
			}
		}
	}
	b.WriteString(`</svg>`)
	// The markup holds only numbers, fixed class names and escaped text.
	c := chart{Title: title, Unit: unit, Max: format(top), SVG: template.HTML(b.String())}
	for _, s := range series {
		last := math.NaN()
		if len(s.pts) > 0 {
			last = s.pts[len(s.pts)-1].v
		}
		s.Last = format(last)
		c.Series = append(c.Series, s)
	}
	return c
}

// clampY keeps a line inside the box (half a stroke from the edges).
func clampY(y float64) float64 { return math.Min(chartH-0.5, math.Max(0.5, y)) }

// segments splits a series at its gaps (NaN values).
func segments(pts []point) [][]point {
	var out [][]point
	var cur []point
	for _, p := range pts {
		if math.IsNaN(p.v) || math.IsInf(p.v, 0) {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, p)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// bar is a usage bar: used of limit.
type bar struct {
	Text  string // "45 / 120"
	Level string // ok, warn, full, none
	SVG   template.HTML
}

// usageBar draws used/limit; limit 0 means unlimited (no bar), used < 0
// unknown.
func usageBar(used, limit float64, unit string) bar {
	if limit <= 0 {
		return bar{Text: "unlimited", Level: "none"}
	}
	if used < 0 {
		return bar{Text: fmt.Sprintf("? / %s %s", count(limit), unit), Level: "none",
			SVG: barSVG(0, "none")}
	}
	used = math.Min(used, limit)
	frac := used / limit
	level := "ok"
	switch {
	case frac >= 0.95:
		level = "full"
	case frac >= 0.75:
		level = "warn"
	}
	return bar{Text: fmt.Sprintf("%s / %s %s", count(used), count(limit), unit), Level: level, SVG: barSVG(frac, level)}
}

func barSVG(frac float64, level string) template.HTML {
	// Numbers and fixed class names only.
	return template.HTML(fmt.Sprintf(
		`<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">`+
			`<rect class="bar-bg" width="100" height="8"/><rect class="bar-fg %s" width="%.1f" height="8"/></svg>`,
		level, frac*100))
}

// count renders a whole number as one, anything else as num does.
func count(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	return num(v)
}

// formatters for the charts.
func fmtRate(v float64) string { return num(v) }

func fmtPct(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return num(v*100) + "%"
}

func fmtSeconds(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v < 1:
		return num(v*1000) + " ms"
	default:
		return num(v) + " s"
	}
}
