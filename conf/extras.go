package conf

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Route extras (issue 12, Gateway API): what an HTTPRoute or GRPCRoute
// rule adds to an entry beyond host and path. None is a TOML key: package
// gateway fills them on the entries it translates, and package route
// turns them into its rules' matches, weighted backends and filters. An
// entry without extras behaves exactly as before.
type Extras struct {
	// Method, if set, must equal the request's method (HTTPRoute
	// matches[].method).
	Method string
	// Headers and Query must all hold (HTTPRoute matches[].headers and
	// matches[].queryParams; GRPCRoute matches[].headers). Header names
	// compare case-insensitively (RFC 9110 §5.1), query names exactly.
	Headers []ValueMatch
	Query   []ValueMatch

	// Rule groups the entries that are one match of one route rule with
	// several weighted backendRefs: entries with the same non-empty Rule
	// (and so the same host, path and matches) form one route rule whose
	// backend is picked per request in proportion to Weight. Package
	// route must not report such entries as overlapping.
	Rule string
	// Weight is this backend's share within its Rule; 0 is never picked
	// (Gateway API: a weight of 0 receives no traffic). Unused without Rule.
	Weight int

	// Filters apply once the rule is chosen; nil: none.
	Filters *Filters

	// Fixed, if non-zero, answers every request of the rule with this
	// status and no upstream: 500 for a rule whose backendRefs are all
	// invalid or all weigh 0 (Gateway API: "the request MUST receive a
	// 500"). ServiceName is then empty.
	Fixed int

	// DeepWildcard: a wildcard Host ("*.example.com") matches names any
	// number of labels deep ("a.b.example.com"), as Gateway API hostnames
	// do; else one label, as Ingress and the TOML file's hosts do. A more
	// specific wildcard wins: "*.b.example.com" before "*.example.com".
	DeepWildcard bool

	// Source names the object the entry came from, for logs, the status
	// page and conflict reports: "HTTPRoute ns/name", "GRPCRoute ns/name",
	// "Ingress ns/name"; "" for the TOML file.
	Source string
	// Created is the source object's creationTimestamp: among rules that
	// tie in every match criterion, the oldest object's wins (Gateway
	// API's precedence, then namespace/name: the order entries are given).
	Created time.Time
}

// ValueMatch is one header or query parameter condition.
type ValueMatch struct {
	Name  string
	Value string
	// Regex: Value is an RE2 regular expression (Go's regexp, matching
	// anywhere unless anchored); else the value must equal Value exactly.
	Regex bool
}

// Filters are HTTPRoute's Core filters of one rule (also a backendRef's
// own filters, which package gateway folds into the entry of that backend).
type Filters struct {
	// RequestHeaders edits the request sent upstream
	// (RequestHeaderModifier); ResponseHeaders the response returned
	// (ResponseHeaderModifier).
	RequestHeaders, ResponseHeaders *HeaderEdit
	// Redirect answers with a redirect instead of forwarding
	// (RequestRedirect); ServiceName is then empty.
	Redirect *Redirect
	// Rewrite changes the request's Host and path before forwarding
	// (URLRewrite).
	Rewrite *Rewrite
}

// HeaderEdit is Gateway API's HTTPHeaderFilter: Set replaces (or adds)
// each field, Add appends a value, Remove deletes by name.
type HeaderEdit struct {
	Set, Add []Header
	Remove   []string
}

// Header is a field name and value.
type Header struct{ Name, Value string }

// Redirect is Gateway API's HTTPRequestRedirectFilter. Empty fields keep
// the request's own: Scheme, Hostname, Port (0: the default port of the
// resulting scheme, as the spec says), Path (nil: unchanged).
// StatusCode is 301 or 302 (default 302).
type Redirect struct {
	Scheme     string
	Hostname   string
	Port       int
	Path       *PathModifier
	StatusCode int
}

// Rewrite is Gateway API's HTTPURLRewriteFilter: Hostname replaces the
// Host sent upstream; Path rewrites the path (nil: unchanged).
type Rewrite struct {
	Hostname string
	Path     *PathModifier
}

// PathModifier is HTTPPathModifier: either ReplaceFullPath, or
// ReplacePrefixMatch, which replaces the part of the path the rule's
// PathPrefix matched (on segment boundaries) and keeps the rest.
type PathModifier struct {
	ReplaceFullPath    string
	ReplacePrefixMatch string
	// Prefix is true for ReplacePrefixMatch (which may be "" or "/").
	Prefix bool
}

// AnswersItself reports whether the entry's requests never reach a
// backend: a fixed status or a redirect. Such an entry may leave
// ServiceName (and type, name, namespace, service_port) empty, and then
// has no readiness watch.
func (x *Extras) AnswersItself() bool {
	return x.Fixed != 0 || (x.Filters != nil && x.Filters.Redirect != nil)
}

// validateExtras checks what package route relies on in services[i]'s
// extras, so that route.Build cannot fail on them: regexes that compile,
// weights not negative, statuses in range.
func (c *Config) validateExtras(i int, add func(key string, index int, format string, args ...any)) {
	s := &c.Services[i]
	for _, list := range [][]ValueMatch{s.Headers, s.Query} {
		for _, m := range list {
			if m.Name == "" {
				add("host", i, "%s: a header or query match without a name", s.Source)
			}
			if m.Regex {
				if _, err := regexp.Compile(m.Value); err != nil {
					add("host", i, "%s: match %q: invalid regular expression: %v", s.Source, m.Name, err)
				}
			}
		}
	}
	if s.Weight < 0 {
		add("host", i, "%s: negative weight %d", s.Source, s.Weight)
	}
	if s.Fixed != 0 && (s.Fixed < 200 || s.Fixed > 599) {
		add("host", i, "%s: fixed status %d out of range 200-599", s.Source, s.Fixed)
	}
	if f := s.Filters; f != nil && f.Redirect != nil {
		if st := f.Redirect.StatusCode; st != 0 && st != 301 && st != 302 {
			add("host", i, "%s: redirect status %d (want 301 or 302)", s.Source, st)
		}
	}
}

// MatchKey renders the entry's match conditions beyond host and path
// (method, headers, query), "" for none: two entries of one host and path
// overlap only if their keys are equal. Header names compare
// case-insensitively; the order of conditions does not matter.
func (e *Extras) MatchKey() string {
	if e.Method == "" && len(e.Headers) == 0 && len(e.Query) == 0 {
		return ""
	}
	render := func(vs []ValueMatch, fold bool) string {
		out := make([]string, 0, len(vs))
		for _, v := range vs {
			n := v.Name
			if fold {
				n = strings.ToLower(n)
			}
			op := "="
			if v.Regex {
				op = "~"
			}
			out = append(out, strconv.Quote(n)+op+strconv.Quote(v.Value))
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	return "method=" + e.Method + " headers[" + render(e.Headers, true) + "] query[" + render(e.Query, false) + "]"
}
