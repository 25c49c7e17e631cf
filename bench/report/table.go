package report

import (
	"strings"
	"unicode/utf8"
)

// Table is a Markdown table under construction.
type Table struct {
	Header []string
	// Right lists the columns (by index) to align right: numbers.
	Right map[int]bool
	Rows  [][]string
}

// Add appends a row; missing cells print empty, extra cells are dropped.
func (t *Table) Add(cells ...string) {
	row := make([]string, len(t.Header))
	copy(row, cells)
	t.Rows = append(t.Rows, row)
}

// Markdown renders the table padded to column width, so that it reads
// as well in a terminal as it renders on a forge. Pipes in cells are
// escaped.
func (t *Table) Markdown() string {
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	w := make([]int, len(t.Header))
	for i, h := range t.Header {
		w[i] = max(3, utf8.RuneCountInString(esc(h)))
	}
	for _, r := range t.Rows {
		for i, c := range r {
			w[i] = max(w[i], utf8.RuneCountInString(esc(c)))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			c = esc(c)
			pad := strings.Repeat(" ", w[i]-utf8.RuneCountInString(c))
			if t.Right[i] {
				b.WriteString(" " + pad + c + " |")
			} else {
				b.WriteString(" " + c + pad + " |")
			}
		}
		b.WriteString("\n")
	}
	line(t.Header)
	b.WriteString("|")
	for i := range t.Header {
		if t.Right[i] {
			b.WriteString(" " + strings.Repeat("-", w[i]-1) + ": |")
		} else {
			b.WriteString(" " + strings.Repeat("-", w[i]) + " |")
		}
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		line(r)
	}
	return b.String()
}
