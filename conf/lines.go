package conf

import (
	"bufio"
	"bytes"
	"strings"
)

// keyPos is one occurrence of a key: the [[services]] entry it is in (-1 at
// top level) and its 1-based line.
type keyPos struct {
	index int
	line  int
}

// keyLines finds the line of each "key = value" in a TOML document, so that
// validation errors can point at it; BurntSushi/toml does not expose key
// positions. It understands what Agimo's configs use: top-level keys,
// [[services]] array tables and plain or quoted keys. Dotted keys and inline
// tables still decode; their errors just carry no line.
func keyLines(data []byte) map[string][]keyPos {
	out := make(map[string][]keyPos)
	table, index := "", -1
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	multiline := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		// Skip the inside of multi-line strings, which may hold '='.
		if c := strings.Count(line, `"""`) + strings.Count(line, `'''`); c%2 == 1 {
			wasIn := multiline
			multiline = !multiline
			if wasIn {
				continue
			}
		} else if multiline {
			continue
		}
		switch {
		case line == "" || line[0] == '#':
		case strings.HasPrefix(line, "[["):
			table = strings.TrimSpace(strings.Trim(cutComment(line), "[] \t"))
			if table == "services" {
				index++
				out["services"] = append(out["services"], keyPos{index: index, line: n})
			}
		case line[0] == '[':
			table = strings.TrimSpace(strings.Trim(cutComment(line), "[] \t"))
			out[table] = append(out[table], keyPos{index: -1, line: n})
		default:
			key, _, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			key = strings.Trim(strings.TrimSpace(key), `"'`)
			path, idx := key, -1
			if table != "" {
				path = table + "." + key
				if table == "services" {
					idx = index
				}
			}
			out[path] = append(out[path], keyPos{index: idx, line: n})
		}
	}
	return out
}

func cutComment(s string) string {
	s, _, _ = strings.Cut(s, "#")
	return s
}

// line returns the line of key (a path without index, e.g. "services.host")
// in services entry index (-1 for top level), or 0 if it is not in the file.
func (c *Config) line(key string, index int) int {
	for _, p := range c.lines[key] {
		if p.index == index {
			return p.line
		}
	}
	return 0
}
