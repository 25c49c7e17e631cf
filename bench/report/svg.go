package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
)

// Point is one step of a latency distribution: Fraction of the samples
// took at most Millis.
type Point struct {
	Fraction float64
	Millis   float64
}

// Series is one target's distribution in a panel.
type Series struct {
	Name   string
	Points []Point // by increasing Fraction
}

// Panel is one plot: the targets' distributions for one scenario.
type Panel struct {
	Title  string
	Series []Series
}

// Plot geometry, in SVG user units.
const (
	panelW, panelH = 480, 300
	padL, padR     = 62, 14
	padT, padB     = 30, 40
	cols           = 2
	// maxNines is the right edge of the x axis: 99.999%. The tail beyond
	// is drawn at the edge (a few samples cannot place it further).
	maxNines = 5
)

var palette = []string{"#7f7f7f", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"}

// SVG draws latency-by-percentile plots, HdrHistogram style: the x axis
// is the percentile on a log scale of 1/(1-p), so the tail (99%, 99.9%)
// gets as much room as the body; the y axis is latency, logarithmic.
// Each series is a step line. Series keep their colour across panels by
// name, in order of first appearance.
func SVG(title string, panels []Panel) []byte {
	colour := map[string]string{}
	for _, p := range panels {
		for _, s := range p.Series {
			if _, ok := colour[s.Name]; !ok {
				colour[s.Name] = palette[len(colour)%len(palette)]
			}
		}
	}
	rows := (len(panels) + cols - 1) / cols
	w, h := cols*panelW, rows*panelH+40
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" text-anchor="middle">%s</text>`+"\n", w/2, esc(title))
	for i, p := range panels {
		x0, y0 := float64(i%cols*panelW), float64(40+i/cols*panelH)
		drawPanel(&b, p, x0, y0, colour)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func drawPanel(b *bytes.Buffer, p Panel, x0, y0 float64, colour map[string]string) {
	left, right := x0+padL, x0+panelW-padR
	top, bottom := y0+padT, y0+panelH-padB
	fmt.Fprintf(b, `<g><text x="%.0f" y="%.0f" font-size="12" font-weight="bold">%s</text>`+"\n", left, y0+16, esc(p.Title))

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if pt.Millis > 0 {
				lo, hi = math.Min(lo, pt.Millis), math.Max(hi, pt.Millis)
			}
		}
	}
	if math.IsInf(lo, 1) {
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f">no samples</text></g>`+"\n", left, (top+bottom)/2)
		return
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	xOf := func(f float64) float64 {
		nines := math.Min(-math.Log10(math.Max(1-f, math.Pow(10, -maxNines))), maxNines)
		return left + (right-left)*nines/maxNines
	}
	yOf := func(ms float64) float64 {
		v := math.Log10(math.Max(ms, math.Pow(10, dlo)))
		return bottom - (bottom-top)*(v-dlo)/(dhi-dlo)
	}
	// Axes and grid: a line per decade of latency and per nine.
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, right-left, bottom-top)
	for d := dlo; d <= dhi; d++ {
		y := yOf(math.Pow(10, d))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, left, y, right, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-4, y+4, esc(Millis(math.Pow(10, d))))
	}
	for n := 0; n <= maxNines; n++ {
		x := left + (right-left)*float64(n)/maxNines
		label := "0%"
		if n > 0 {
			label = fmt.Sprintf("%.*f%%", max(n-2, 0), 100*(1-math.Pow(10, -float64(n))))
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, x, top, x, bottom)
		anchor := "middle"
		if n == maxNines {
			anchor = "end" // keep the last label inside the panel
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`+"\n", x, bottom+14, anchor, label)
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">percentile</text>`+"\n", (left+right)/2, bottom+30)
	fmt.Fprintf(b, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">latency</text>`+"\n", x0+12, (top+bottom)/2)

	for i, s := range p.Series {
		var pts bytes.Buffer
		prev := 0.0
		lastX, lastY := math.Inf(-1), math.Inf(-1)
		add := func(x, y float64) {
			// Thousands of buckets land on the same pixel: keep a point
			// only when it moves half a unit, so the file stays small.
			if math.Abs(x-lastX) < 0.5 && math.Abs(y-lastY) < 0.5 {
				return
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
			lastX, lastY = x, y
		}
		for i, pt := range s.Points {
			// A step: flat at this latency from the previous fraction to
			// this one. The last point is always drawn, so the line ends
			// at the maximum.
			if i == len(s.Points)-1 {
				lastX, lastY = math.Inf(-1), math.Inf(-1)
			}
			add(xOf(prev), yOf(pt.Millis))
			add(xOf(pt.Fraction), yOf(pt.Millis))
			prev = pt.Fraction
		}
		c := colour[s.Name]
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`+"\n", c, bytes.TrimSpace(pts.Bytes()))
		ly := top + 14 + float64(i)*14
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`, left+8, ly-4, left+24, ly-4, c)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+28, ly, esc(s.Name))
	}
	b.WriteString("</g>\n")
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
