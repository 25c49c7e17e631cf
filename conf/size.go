package conf

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a byte count: a TOML integer, or a string with a unit such as
// "16KiB", "10MiB", "1GB" (nginx-style "10m" too).
type Size struct {
	Bytes int64
	// Set reports whether the key was present.
	Set bool
}

// UnmarshalTOML implements toml.Unmarshaler for integers and strings.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("size %d is negative", v)
		}
		s.Bytes, s.Set = v, true
		return nil
	case string:
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		s.Bytes, s.Set = n, true
		return nil
	}
	return fmt.Errorf("a size is an integer or a string such as \"10MiB\", not %T", v)
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1000, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1000 * 1000, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1000 * 1000 * 1000, "gib": 1 << 30,
}

// ParseSize parses "512", "16KiB", "10 MiB", "1GB" or "10m".
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && in[i] >= '0' && in[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 1048576, \"16KiB\", \"10MiB\")", s)
	}
	n, err := strconv.ParseInt(in[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(in[i:]))]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want B, KiB, MiB, GiB, KB, MB, GB)", s, in[i:])
	}
	if n > (1<<62)/unit {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * unit, nil
}
