package status

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agimo/agimo/core"
)

// Options are what the page reads.
type Options struct {
	// Core returns the core serving now; nil until it is built (the page
	// answers 503 meanwhile: the metrics listener opens first).
	Core func() *core.Core
	// Reloads holds the last reload's outcome; nil: none shown.
	Reloads *Reloads
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// Handler serves the status page: JSON when the client prefers
// application/json to text/html (Accept, RFC 9110 §12.5.1), else HTML,
// which a browser gets.
func Handler(o Options) http.Handler {
	if o.Reloads == nil {
		o.Reloads = &Reloads{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Vary", "Accept")
		var c *core.Core
		if o.Core != nil {
			c = o.Core()
		}
		if c == nil {
			http.Error(w, "agimo is starting", http.StatusServiceUnavailable)
			return
		}
		v := Snapshot(c, o.Reloads, o.Now())
		var b bytes.Buffer
		if WantsJSON(r.Header.Values("Accept")) {
			enc := json.NewEncoder(&b)
			enc.SetIndent("", "  ")
			if err := enc.Encode(v); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "application/json")
		} else {
			if err := page.Execute(&b, v); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "text/html; charset=utf-8")
			// The page loads nothing and runs no script (W3C CSP Level 3).
			h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		}
		h.Set("Content-Length", strconv.Itoa(b.Len()))
		_, _ = w.Write(b.Bytes())
	})
}

// WantsJSON reports whether Accept (its field lines) prefers
// application/json to text/html: the q of each is that of the most
// specific range matching it (RFC 9110 §12.5.1); a tie, "*/*" or no
// Accept at all get HTML. The standard library exports no Accept parser
// (net/http's is internal to its file server), hence this one.
func WantsJSON(accept []string) bool {
	var jsonQ, htmlQ float64 = -1, -1
	var jsonSpec, htmlSpec int // 0 none, 1 */*, 2 type/*, 3 exact
	for _, line := range accept {
		for _, part := range strings.Split(line, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(s, 64); err != nil || math.IsNaN(q) {
					continue
				}
			}
			if sp := specificity(mt, "application/json"); sp > jsonSpec {
				jsonSpec, jsonQ = sp, q
			}
			if sp := specificity(mt, "text/html"); sp > htmlSpec {
				htmlSpec, htmlQ = sp, q
			}
		}
	}
	return jsonQ > 0 && jsonQ > htmlQ
}

// specificity is how closely media range rng matches type typ: 3 exactly,
// 2 by "type/*", 1 by "*/*", 0 not at all.
func specificity(rng, typ string) int {
	switch {
	case rng == typ:
		return 3
	case rng == "*/*":
		return 1
	case strings.HasSuffix(rng, "/*") && strings.HasPrefix(typ, rng[:len(rng)-1]):
		return 2
	}
	return 0
}

//go:embed page.html
var pageText string

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago":  ago,
	"secs": func(p *float64) string { return fmt.Sprintf("%.3f s", *p) },
	"dur":  dur,
}).Parse(pageText))

// ago says how long before now t (a time.Time or *time.Time) was, to the
// second.
func ago(now time.Time, t any) string {
	var at time.Time
	switch t := t.(type) {
	case time.Time:
		at = t
	case *time.Time:
		if t != nil {
			at = *t
		}
	}
	if at.IsZero() {
		return "never"
	}
	return now.Sub(at).Truncate(time.Second).String() + " ago"
}

// dur says seconds s (a float64 or *float64) as a duration, to the second.
func dur(s any) string {
	var f float64
	switch s := s.(type) {
	case float64:
		f = s
	case *float64:
		f = *s
	}
	return time.Duration(f * float64(time.Second)).Round(time.Second).String()
}
