package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// chartSVG draws latency (log scale) against offered load (log scale) for
// direct, nginx and glmctl: p50 solid, p99 dashed; a hollow point marks a
// rate the path did not keep up with (achieved < 95 % of offered, or
// requests left unsent).
func chartSVG(rows []openRow, note string) string {
	const (
		W, H                 = 760.0, 460.0
		left, right, top, bo = 70.0, 170.0, 48.0, 60.0
	)
	colors := map[string]string{pDirect: "#7f7f7f", pNginx: "#2ca02c", pGlmctl: "#1f77b4"}
	var minX, maxX, minY, maxY = math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, r := range rows {
		if colors[r.path] == "" {
			continue
		}
		minX, maxX = math.Min(minX, r.rate), math.Max(maxX, r.rate)
		for _, y := range []float64{r.p50, r.p99} {
			if y > 0 {
				minY, maxY = math.Min(minY, y), math.Max(maxY, y)
			}
		}
	}
	if math.IsInf(minX, 1) || math.IsInf(minY, 1) {
		return `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>`
	}
	lx0, lx1 := math.Log10(minX)-0.08, math.Log10(maxX)+0.08
	ly0, ly1 := math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
	if ly1 <= ly0 {
		ly1 = ly0 + 1
	}
	pw, ph := W-left-right, H-top-bo
	x := func(v float64) float64 { return left + (math.Log10(v)-lx0)/(lx1-lx0)*pw }
	y := func(v float64) float64 {
		v = math.Max(v, math.Pow(10, ly0))
		return top + ph - (math.Log10(v)-ly0)/(ly1-ly0)*ph
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">Latency versus offered load, non-stream chat (open loop)</text>`+"\n", left)
	if note != "" {
		fmt.Fprintf(&b, `<text x="%.0f" y="36" font-size="10" fill="#555">%s</text>`+"\n", left, html.EscapeString(note))
	}
	// Grid and axes.
	for e := ly0; e <= ly1; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if math.Log10(v) > ly1+1e-9 {
				break
			}
			yy := y(v)
			stroke := "#eeeeee"
			if m == 1 {
				stroke = "#cccccc"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left, yy, left+pw, yy, stroke)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, yy, trimNum(v))
		}
	}
	seen := map[float64]bool{}
	for _, r := range rows {
		if seen[r.rate] {
			continue
		}
		seen[r.rate] = true
		xx := x(r.rate)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eeeeee"/>`+"\n", xx, top, xx, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xx, top+ph+18, html.EscapeString(kilo(r.rate)))
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">offered load, requests/s (log scale)</text>`+"\n", left+pw/2, H-18)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">latency, ms (log scale)</text>`+"\n", top+ph/2)

	// Series.
	ly := top + 10.0
	for _, p := range chartPaths {
		col := colors[p]
		var pts []openRow
		for _, r := range rows {
			if r.path == p {
				pts = append(pts, r)
			}
		}
		if len(pts) == 0 {
			continue
		}
		for _, s := range []struct {
			name string
			dash string
			f    func(openRow) float64
		}{{"p50", "", func(r openRow) float64 { return r.p50 }}, {"p99", ` stroke-dasharray="6 4"`, func(r openRow) float64 { return r.p99 }}} {
			var path strings.Builder
			for i, r := range pts {
				cmd := "L"
				if i == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, x(r.rate), y(s.f(r)))
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.TrimSpace(path.String()), col, s.dash)
			for _, r := range pts {
				fill := col
				if r.achieved < 0.95*r.rate || r.unsent > 0 {
					fill = "white"
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s" stroke-width="1.5"><title>%s %s at %s req/s: %s ms (achieved %s req/s)</title></circle>`+"\n",
					x(r.rate), y(s.f(r)), fill, col, p, s.name, kilo(r.rate), num(s.f(r)), kilo(r.achieved))
			}
			lx := left + pw + 16
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, ly, lx+28, ly, col, s.dash)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s %s</text>`+"\n", lx+34, ly, p, s.name)
			ly += 20
		}
	}
	lx := left + pw + 16
	fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="white" stroke="#333" stroke-width="1.5"/>`+"\n", lx+14, ly+6)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">fell behind</text>`+"\n", lx+34, ly+6)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="#555">(&lt; 95 %% of offered)</text>`+"\n", lx+34, ly+22)
	b.WriteString("</svg>\n")
	return b.String()
}

func trimNum(v float64) string {
	s := fmt.Sprintf("%g", v)
	return s
}
