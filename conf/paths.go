package conf

import (
	"fmt"
	"strings"
)

// DefaultPaths is what an entry without paths serves: every path.
var DefaultPaths = []string{"/"}

// validatePaths checks and normalises service i's paths: each a path
// prefix starting with "/", as a request target's path is sent (RFC 3986
// §3.3 characters, no query or fragment), without "." or ".." or empty
// segments, which clients normalise away before sending, so that a prefix
// holding them would never match. A trailing "/" is removed: "/api/" and
// "/api" match the same paths (segment boundaries, route.Match).
func (c *Config) validatePaths(i int, add func(key string, index int, format string, args ...any)) {
	s := &c.Services[i]
	for _, p := range s.ExactPaths {
		if msg := checkPath(p); msg != "" {
			add("paths", i, "invalid exact path %q: %s", p, msg)
		}
	}
	if s.Paths == nil && c.line("services.paths", i) == 0 {
		if len(s.ExactPaths) == 0 {
			s.Paths = []string{"/"}
		}
		return
	}
	if len(s.Paths) == 0 {
		add("paths", i, "empty: list at least one path prefix, such as \"/\", or remove the key")
		return
	}
	seen := make(map[string]string, len(s.Paths))
	out := make([]string, 0, len(s.Paths))
	for _, p := range s.Paths {
		if msg := checkPath(p); msg != "" {
			add("paths", i, "invalid path %q: %s", p, msg)
			continue
		}
		n := normalizePath(p)
		if first, dup := seen[n]; dup {
			add("paths", i, "path %q repeats %q (a trailing \"/\" matches the same paths)", p, first)
			continue
		}
		seen[n] = p
		out = append(out, n)
	}
	s.Paths = out
	if s.TLSPassthrough && (len(out) != 1 || out[0] != "/") {
		add("paths", i, "not allowed with tls_passthrough = true: a passthrough connection is routed by SNI alone, as its requests stay encrypted; remove paths")
	}
}

// checkPath returns why p cannot be a path prefix, or "".
func checkPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "must start with /"
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("/-._~!$&'()*+,;=:@", c) >= 0:
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "\"%\" must start a percent-encoded byte such as %20"
			}
		case c == '?' || c == '#':
			return "a path prefix has no query or fragment"
		default:
			return fmt.Sprintf("%q is not allowed in a path as sent (percent-encode it)", c)
		}
	}
	for seg := range strings.SplitSeq(strings.TrimSuffix(p[1:], "/"), "/") {
		switch {
		case seg == "" && p != "/":
			return "empty segment (\"//\")"
		case seg == "." || seg == "..":
			return "\".\" and \"..\" segments are never sent by clients that normalise paths"
		}
	}
	return ""
}

// normalizePath removes a trailing "/", except from "/".
func normalizePath(p string) string {
	if len(p) > 1 {
		return strings.TrimSuffix(p, "/")
	}
	return p
}

// underPrefix reports whether path falls under prefix on segment
// boundaries, as route.Match.Accepts decides for requests.
func underPrefix(path, prefix string) bool {
	return prefix == "/" || path == prefix || strings.HasPrefix(path, prefix+"/")
}

// validateRoutes checks what entries sharing a host must agree on: no
// two serve the same path prefix (both entries named); a tls_passthrough
// entry is alone on its host (passthrough is routed by SNI, before any
// path is seen); and each probe path is routed to the entry that names
// it, not to another entry's longer prefix. Per-entry keys may differ
// between entries of one host: timeouts, wake, waiting page,
// https_redirect (decided after the path, as Gateway API's RequestRedirect
// filter is per rule), protocol, and the certificates, which all join one
// pool chosen by SNI.
func (c *Config) validateRoutes(valid []bool) []error {
	type claim struct {
		entry int
		path  string
		// match is the rest of the entry's match (extras.go): entries
		// that differ in it do not overlap on a path.
		match string
	}
	byHost := make(map[string][]claim)
	entries := make(map[string][]int)
	var hosts []string
	for i, s := range c.Services {
		if !valid[i] {
			continue // reported at its host
		}
		if entries[s.Host] == nil {
			hosts = append(hosts, s.Host)
		}
		entries[s.Host] = append(entries[s.Host], i)
		m := s.MatchKey()
		for _, p := range s.Paths {
			byHost[s.Host] = append(byHost[s.Host], claim{i, p, m})
		}
		for _, p := range s.ExactPaths {
			byHost[s.Host] = append(byHost[s.Host], claim{i, "=" + p, m})
		}
	}
	var errs []error
	for _, h := range hosts {
		claims, ents := byHost[h], entries[h]
		owner := make(map[string]int, len(claims))
		for _, cl := range claims {
			if j, dup := owner[cl.path+" "+cl.match]; dup {
				if r := c.Services[j].Rule; r != "" && r == c.Services[cl.entry].Rule {
					continue // weighted backends of one route rule
				}
				errs = append(errs, c.entryError(cl.entry, "paths", "path %q of host %q is already served by %s", cl.path, h, c.where(j, "paths")))
				continue
			}
			owner[cl.path+" "+cl.match] = cl.entry
		}
		for _, i := range ents {
			if !c.Services[i].TLSPassthrough || len(ents) == 1 {
				continue
			}
			other := ents[0]
			if other == i {
				other = ents[1]
			}
			errs = append(errs, c.entryError(i, "tls_passthrough", "host %q is also served by %s: a tls_passthrough host has one entry, as it is routed by SNI before any path is seen", h, c.where(other, "host")))
		}
		for _, i := range ents {
			for _, probe := range c.Services[i].ProbePaths {
				best, to := "", -1
				for _, o := range claims {
					if o.match != "" && o.entry != i {
						continue // a probe carries no method, header or query to match
					}
					if o.path == "="+probe {
						best, to = o.path, o.entry // an exact path wins
						break
					}
					if !strings.HasPrefix(o.path, "=") && underPrefix(probe, o.path) && (to < 0 || len(o.path) > len(best)) {
						best, to = o.path, o.entry
					}
				}
				switch {
				case to < 0:
					errs = append(errs, c.entryError(i, "probe_paths", "probe path %q is under none of this host's paths, so it never reaches this entry", probe))
				case to != i && (c.Services[i].Rule == "" || c.Services[to].Rule != c.Services[i].Rule):
					errs = append(errs, c.entryError(i, "probe_paths", "probe path %q is routed to %s (longest prefix %q), not to this entry", probe, c.where(to, "paths"), best))
				}
			}
		}
	}
	return errs
}

// entryError is an error at key of services[i], or at its host when the
// key is not in the file (paths left to their default).
func (c *Config) entryError(i int, key, format string, args ...any) error {
	line, k, note := c.entryKeyAt(i, key)
	if note != "" {
		note = ` (this entry's paths default to ["/"])`
	}
	return &Error{File: c.File, Line: line, Key: k, Msg: fmt.Sprintf(format, args...) + note}
}

// where names services[j]'s key for a message, with its position:
// "agimo.toml:12 services[0].paths"; its host when the key is not in the
// file.
func (c *Config) where(j int, key string) string {
	line, k, note := c.entryKeyAt(j, key)
	switch {
	case c.File != "" && line > 0:
		return fmt.Sprintf("%s:%d %s%s", c.File, line, k, note)
	case line > 0:
		return fmt.Sprintf("line %d %s%s", line, k, note)
	}
	return k + note
}

// entryKeyAt returns the line and display name of services[i]'s key, or
// of its host if the key is not in the file, with a note of the default
// for paths.
func (c *Config) entryKeyAt(i int, key string) (line int, name, note string) {
	if line := c.line("services."+key, i); line > 0 {
		return line, displayKey([]string{"services", key}, i), ""
	}
	if key == "paths" {
		note = ` (paths default to ["/"])`
	}
	return c.line("services.host", i), displayKey([]string{"services", "host"}, i), note
}
