// Package report turns the bench suite's raw figures into what a person
// reads: medians with their spread across repetitions, ratios between
// targets measured in the same run, Markdown tables and an SVG plot of
// latency distributions. It knows nothing about how the figures were
// measured.
package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Spread is a figure measured several times: its median and the range.
type Spread struct {
	Median, Min, Max float64
	N                int
}

// Of summarises xs; NaNs (a repetition that could not measure the
// figure) are left out. An empty or all-NaN input gives N == 0.
func Of(xs []float64) Spread {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Median: m, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// Noise is the range relative to the median: (max-min)/median.
func (s Spread) Noise() float64 {
	if s.N == 0 || s.Median == 0 {
		return math.NaN()
	}
	return (s.Max - s.Min) / math.Abs(s.Median)
}

// Format prints the median and, if there was more than one value, the
// range, each with f (e.g. Num or Ratio).
func (s Spread) Format(f func(float64) string) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 || s.Min == s.Max {
		return f(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

// Ratios divides a[i] by b[i] pairwise: each repetition's figure for one
// target by the same repetition's figure for the other, so that a slow
// moment of the machine, which hits both, cancels out. A missing or zero
// denominator gives NaN.
func Ratios(a, b []float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		if b[i] == 0 || math.IsNaN(b[i]) || math.IsNaN(a[i]) {
			out[i] = math.NaN()
			continue
		}
		out[i] = a[i] / b[i]
	}
	return out
}

// Num prints a count or rate with thousands separators, or with three
// significant digits below 100.
func Num(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	if math.Abs(x) < 100 {
		return trimZeros(fmt.Sprintf("%.3g", x))
	}
	s := fmt.Sprintf("%.0f", math.Abs(x))
	var b strings.Builder
	if x < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Ratio prints x as "1.23×".
func Ratio(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x)
}

// Millis prints a duration given in milliseconds with three significant
// digits in a fitting unit.
func Millis(ms float64) string {
	switch {
	case math.IsNaN(ms):
		return "–"
	case ms < 1:
		return trimZeros(fmt.Sprintf("%.3g", ms*1000)) + "µs"
	case ms < 1000:
		return trimZeros(fmt.Sprintf("%.3g", ms)) + "ms"
	}
	return trimZeros(fmt.Sprintf("%.3g", ms/1000)) + "s"
}

// trimZeros drops an exponent-free number's trailing fractional zeros.
func trimZeros(s string) string {
	if !strings.Contains(s, ".") || strings.ContainsAny(s, "e") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
