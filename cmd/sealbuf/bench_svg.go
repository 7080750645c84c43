//go:build linux

package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// writeBenchSVG draws rows as grouped bars: one group per size, one bar per
// mode, bar height the speed relative to the socket copy (higher is
// faster), with a line at 1x. Hand-written SVG, no dependencies.
func writeBenchSVG(path string, modes []string, sizes []int64, rows []benchRow, cfg benchConfig) error {
	const (
		left, right, top, bottom = 70.0, 20.0, 60.0, 90.0
		plotH                    = 320.0
		barW, gap                = 14.0, 26.0
	)
	groupW := float64(len(modes))*barW + gap
	plotW := float64(len(sizes)) * groupW
	width, height := max(left+plotW+right, 780), top+plotH+bottom

	at := map[string]map[int64]benchRow{}
	ymax := 1.0
	for _, r := range rows {
		if at[r.Mode] == nil {
			at[r.Mode] = map[int64]benchRow{}
		}
		at[r.Mode][r.Size] = r
		ymax = math.Max(ymax, r.VsSocket)
	}
	ymax = niceCeil(ymax * 1.05)
	y := func(v float64) float64 { return top + plotH - v/ymax*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">sealbuf handoff between two processes: speed relative to an AF_UNIX socket copy</text>`+"\n")
	fanout := ""
	if cfg.consumers > 1 {
		fanout = fmt.Sprintf(", each message to %d consumers", cfg.consumers)
	}
	fmt.Fprintf(&b, `<text x="10" y="40" fill="#555">higher is faster; one message in flight, every byte written and checked; pin=%s%s, %v per measurement</text>`+"\n", html.EscapeString(cfg.pin), fanout, cfg.per)

	// Grid and y axis.
	step := ymax / 5
	for i := 0; i <= 5; i++ {
		v := float64(i) * step
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, left+plotW, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%sx</text>`+"\n", left-6, y(v)+4, trimFloat(v))
	}
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">× socket speed</text>`+"\n", top+plotH/2)

	// Bars.
	for g, size := range sizes {
		x0 := left + float64(g)*groupW + gap/2
		for i, m := range modes {
			r, ok := at[m][size]
			if !ok {
				continue
			}
			x := x0 + float64(i)*barW
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s/msg, %.2fx socket</title></rect>`+"\n",
				x, y(r.VsSocket), barW-2, y(0)-y(r.VsSocket), benchColor(i), html.EscapeString(m), sizeName(size), fmtNs(r.NsPerMsg), r.VsSocket)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x0+float64(len(modes))*barW/2, top+plotH+18, sizeName(size))
	}
	// The socket line.
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="4 3"/>`+"\n", left, left+plotW, y(1), y(1))
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, left+plotW, y(0), y(0))

	// Legend.
	lx, ly := left, top+plotH+40
	for i, m := range modes {
		x := lx + float64(i%4)*150
		yy := ly + float64(i/4)*18
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n", x, yy-10, benchColor(i), x+16, yy, html.EscapeString(m))
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

var benchColors = []string{"#888888", "#bbbbbb", "#1f77b4", "#aec7e8", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

func benchColor(i int) string { return benchColors[i%len(benchColors)] }

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (or halves).
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
