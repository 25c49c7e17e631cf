package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func TestSpread(t *testing.T) {
	for _, c := range []struct {
		in               []float64
		med, lo, hi      float64
		n                int
		format, noiseFmt string
	}{
		{[]float64{3, 1, 2}, 2, 1, 3, 3, "2 (1–3)", "1"},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4, 4, "2.5 (1–4)", "1.2"},
		{[]float64{5, math.NaN(), 5}, 5, 5, 5, 2, "5", "0"},
		{[]float64{7}, 7, 7, 7, 1, "7", "0"},
	} {
		s := Of(c.in)
		if s.Median != c.med || s.Min != c.lo || s.Max != c.hi || s.N != c.n {
			t.Errorf("Of(%v) = %+v", c.in, s)
		}
		if got := s.Format(Num); got != c.format {
			t.Errorf("Of(%v).Format = %q, want %q", c.in, got, c.format)
		}
		if got := Num(s.Noise()); got != c.noiseFmt {
			t.Errorf("Of(%v).Noise = %s, want %s", c.in, got, c.noiseFmt)
		}
	}
	if s := Of([]float64{math.NaN()}); s.N != 0 || s.Format(Num) != "–" || !math.IsNaN(s.Median) {
		t.Errorf("all-NaN spread = %+v", s)
	}
}

func TestRatiosPairRepetitions(t *testing.T) {
	got := Ratios([]float64{10, 20, 30, 40}, []float64{5, 0, math.NaN(), 10})
	want := []float64{2, math.NaN(), math.NaN(), 4}
	for i := range want {
		if !(got[i] == want[i] || math.IsNaN(got[i]) && math.IsNaN(want[i])) {
			t.Errorf("ratio %d = %v, want %v", i, got[i], want[i])
		}
	}
	if r := Of(got); r.Median != 3 || r.Min != 2 || r.Max != 4 {
		t.Errorf("ratio spread %+v", r)
	}
	if len(Ratios([]float64{1, 2, 3}, []float64{1})) != 1 {
		t.Error("ratios of unequal lengths not cut to the shorter")
	}
}

func TestFormats(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Num(0), "0"}, {Num(1.5), "1.5"}, {Num(99.94), "99.9"}, {Num(1234567.4), "1,234,567"},
		{Num(-1234), "-1,234"}, {Num(100), "100"}, {Num(math.NaN()), "–"},
		{Ratio(1.234), "1.23×"}, {Ratio(math.NaN()), "–"},
		{Millis(0.0123), "12.3µs"}, {Millis(0.5), "500µs"}, {Millis(2), "2ms"}, {Millis(12.34), "12.3ms"},
		{Millis(1500), "1.5s"}, {Millis(math.NaN()), "–"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := &Table{Header: []string{"name", "value"}, Right: map[int]bool{1: true}}
	tb.Add("a|b", "1")
	tb.Add("longer name", "12,345", "dropped")
	tb.Add("short")
	want := "" +
		"| name        |  value |\n" +
		"| ----------- | -----: |\n" +
		"| a\\|b        |      1 |\n" +
		"| longer name | 12,345 |\n" +
		"| short       |        |\n"
	if got := tb.Markdown(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSVGWellFormed(t *testing.T) {
	panels := []Panel{
		{Title: "pinned · http-small · 64 conns <&>", Series: []Series{
			{Name: "direct", Points: []Point{{0.5, 0.1}, {0.99, 0.5}, {1, 2}}},
			{Name: "agimo", Points: []Point{{0.5, 0.2}, {1, 3}}},
		}},
		{Title: "empty", Series: []Series{{Name: "agimo"}}},
		{Title: "one point", Series: []Series{{Name: "nginx", Points: []Point{{1, 1}}}}},
	}
	b := SVG("latency", panels)
	d := xml.NewDecoder(bytes.NewReader(b))
	counts := map[string]int{}
	var texts []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			counts[el.Name.Local]++
			if el.Name.Local == "svg" && el.Name.Space != "http://www.w3.org/2000/svg" {
				t.Errorf("svg namespace %q", el.Name.Space)
			}
		case xml.CharData:
			texts = append(texts, string(el))
		}
	}
	if counts["svg"] != 1 || counts["polyline"] != 3 {
		t.Errorf("elements %v: want one svg and a polyline per series in panels with samples (3)", counts)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"pinned · http-small · 64 conns <&>", "no samples", "direct", "agimo", "nginx", "99.9%", "percentile"} {
		if !strings.Contains(all, want) {
			t.Errorf("text %q missing", want)
		}
	}
	// Same colour for the same target in every panel.
	if c := bytes.Count(b, []byte(`stroke="`+palette[1]+`" stroke-width="1.6"`)); c != 1 {
		t.Errorf("agimo's colour used by %d lines, want 1", c)
	}
}
