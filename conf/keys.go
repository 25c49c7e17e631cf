package conf

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

func (c *Config) decodeError(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		// Name the [[services]] entry the key is in, found by its line.
		key := pe.LastKey
		for _, o := range c.lines[key] {
			if o.line == pe.Position.Line && o.index >= 0 {
				key = displayKey(strings.Split(key, "."), o.index)
			}
		}
		return &Error{Line: pe.Position.Line, Key: key, Msg: pe.Message}
	}
	return &Error{Msg: err.Error()}
}

var (
	configFields  = tomlFields(reflect.TypeFor[Config]())
	serviceFields = tomlFields(reflect.TypeFor[Service]())
)

// tomlFields maps the TOML keys of a struct to the types of their fields.
func tomlFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type)
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("toml"); f.IsExported() && tag != "" && tag != "-" {
			m[tag] = f.Type
		}
	}
	return m
}

// checkKeys reports unknown keys and values of the wrong type (or bad
// durations) in a generically decoded config, each with its line and key.
func (c *Config) checkKeys(raw map[string]any) (unknown, bad []error) {
	var check func(fields map[string]reflect.Type, table map[string]any, index int)
	check = func(fields map[string]reflect.Type, table map[string]any, index int) {
		for k, v := range table {
			path := k
			if index >= 0 {
				path = "services." + k
			}
			at := func(msg string) *Error {
				return &Error{Line: c.line(path, index), Key: displayKey(strings.Split(path, "."), index), Msg: msg}
			}
			t, ok := fields[k]
			switch {
			case !ok:
				unknown = append(unknown, at("unknown key"))
			case t == reflect.TypeFor[[]Service]():
				svcs, ok := tablesOf(v)
				if !ok {
					bad = append(bad, at("must be [[services]] entries, not "+tomlType(v)))
				}
				for i, s := range svcs {
					check(serviceFields, s, i)
				}
			default:
				if msg := checkValue(t, v); msg != "" {
					bad = append(bad, at(msg))
				}
			}
		}
	}
	check(configFields, raw, -1)
	return unknown, bad
}

// tablesOf returns v as a list of tables: an array of tables, or an array
// whose elements are all inline tables.
func tablesOf(v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, len(v))
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out[i] = m
		}
		return out, true
	}
	return nil, false
}

// checkValue returns why v cannot be decoded into a field of type t, or "".
func checkValue(t reflect.Type, v any) string {
	if t.Kind() == reflect.Pointer { // an optional key (cold_start_header)
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[Size]():
		var sz Size
		if err := sz.UnmarshalTOML(v); err != nil {
			return err.Error()
		}
	case t == reflect.TypeFor[Duration]():
		s, ok := v.(string)
		if n, isInt := v.(int64); isInt {
			return fmt.Sprintf("a duration is a string with a unit, such as \"%ds\", not the number %d", n, n)
		}
		if !ok {
			return "a duration is a string such as \"30s\", not " + tomlType(v)
		}
		if _, err := ParseDuration(s); err != nil {
			return err.Error()
		}
	case t.Kind() == reflect.String:
		if _, ok := v.(string); !ok {
			return "want a string, not " + tomlType(v)
		}
	case t.Kind() == reflect.Int:
		if _, ok := v.(int64); !ok {
			return "want an integer, not " + tomlType(v)
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			return "want true or false, not " + tomlType(v)
		}
	case t == reflect.TypeFor[[]string]():
		list, ok := v.([]any)
		if !ok {
			return "want a list of strings, not " + tomlType(v)
		}
		for _, e := range list {
			if _, ok := e.(string); !ok {
				return "want a list of strings, but an element is " + tomlType(e)
			}
		}
	}
	return ""
}

// tomlType names the TOML type of a generically decoded value.
func tomlType(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("%v", v)
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []map[string]any, []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

// joinSorted joins errs in order of line, then key.
func joinSorted(errs []error) error {
	slices.SortStableFunc(errs, func(a, b error) int {
		ea, eb := a.(*Error), b.(*Error)
		if ea.Line != eb.Line {
			return cmp.Compare(ea.Line, eb.Line)
		}
		return strings.Compare(ea.Key, eb.Key)
	})
	return errors.Join(errs...)
}

// displayKey renders a key path for users: "services[2].hots".
func displayKey(k []string, index int) string {
	if len(k) > 1 && k[0] == "services" && index >= 0 {
		return fmt.Sprintf("services[%d].%s", index, strings.Join(k[1:], "."))
	}
	return strings.Join(k, ".")
}
