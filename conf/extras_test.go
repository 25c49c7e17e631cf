package conf

import (
	"strings"
	"testing"
)

// gw is an entry of host g.test, path /p, as package gateway makes one.
func gw(name string, x Extras) Service {
	if x.Source == "" {
		x.Source = "HTTPRoute apps/" + name
	}
	return Service{Host: "g.test", Type: "deployment", Namespace: "apps", Name: name, ServiceName: name,
		ServicePort: 80, Paths: []string{"/p"}, Extras: x}
}

// TestExtrasOverlap: entries of one host and path overlap unless they are
// backends of one rule or differ in method, header or query matches;
// header names compare without case, the order of conditions not at all.
func TestExtrasOverlap(t *testing.T) {
	hdr := func(kv ...string) []ValueMatch {
		var out []ValueMatch
		for i := 0; i < len(kv); i += 2 {
			out = append(out, ValueMatch{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	tests := []struct {
		name     string
		services []Service
		overlap  bool
	}{
		{"backends of one rule", []Service{gw("a", Extras{Rule: "r", Weight: 1}), gw("b", Extras{Rule: "r", Weight: 2})}, false},
		{"two rules, same match", []Service{gw("a", Extras{Rule: "r1"}), gw("b", Extras{Rule: "r2"})}, true},
		{"methods differ", []Service{gw("a", Extras{Method: "GET"}), gw("b", Extras{Method: "POST"})}, false},
		{"a method and none", []Service{gw("a", Extras{Method: "GET"}), gw("b", Extras{})}, false},
		{"headers differ", []Service{gw("a", Extras{Headers: hdr("X-A", "1")}), gw("b", Extras{Headers: hdr("X-A", "2")})}, false},
		{"header names without case", []Service{gw("a", Extras{Headers: hdr("X-A", "1")}), gw("b", Extras{Headers: hdr("x-a", "1")})}, true},
		{"header order", []Service{gw("a", Extras{Headers: hdr("X-A", "1", "X-B", "2")}), gw("b", Extras{Headers: hdr("X-B", "2", "X-A", "1")})}, true},
		{"query names with case", []Service{gw("a", Extras{Query: hdr("k", "1")}), gw("b", Extras{Query: hdr("K", "1")})}, false},
		{"same query", []Service{gw("a", Extras{Query: hdr("k", "1")}), gw("b", Extras{Query: hdr("k", "1")})}, true},
	}
	for _, tt := range tests {
		c := &Config{Services: tt.services}
		err := c.Validate()
		if got := err != nil && strings.Contains(err.Error(), "already served by"); got != tt.overlap {
			t.Errorf("%s: overlap reported %v (%v); want %v", tt.name, got, err, tt.overlap)
		}
	}
}

// TestExtrasNoBackend: a fixed answer or a redirect needs no service; any
// other entry still does. Bad extras are reported, not left to fail the
// routing table.
func TestExtrasNoBackend(t *testing.T) {
	redirect := Service{Host: "g.test", Paths: []string{"/old"}, Extras: Extras{Source: "HTTPRoute apps/r",
		Filters: &Filters{Redirect: &Redirect{Scheme: "https"}}}}
	fixed := Service{Host: "g.test", Paths: []string{"/none"}, Extras: Extras{Source: "HTTPRoute apps/f", Fixed: 500}}
	if err := (&Config{Services: []Service{redirect, fixed}}).Validate(); err != nil {
		t.Errorf("redirect and fixed entries without a service: %v; want valid", err)
	}
	tests := []struct {
		name string
		s    Service
		want string
	}{
		{"plain entry without a service", Service{Host: "g.test", Extras: Extras{Source: "HTTPRoute apps/x"}}, "missing (required)"},
		{"bad regex", gw("a", Extras{Headers: []ValueMatch{{Name: "X", Value: "(", Regex: true}}}), "invalid regular expression"},
		{"negative weight", gw("a", Extras{Rule: "r", Weight: -1}), "negative weight"},
		{"redirect status", func() Service {
			s := redirect
			s.Filters = &Filters{Redirect: &Redirect{StatusCode: 307}}
			return s
		}(), "redirect status 307"},
		{"fixed status", Service{Host: "g.test", Extras: Extras{Fixed: 42}}, "fixed status 42"},
	}
	for _, tt := range tests {
		err := (&Config{Services: []Service{tt.s}}).Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v; want an error with %q", tt.name, err, tt.want)
		}
	}
}

// TestExtrasProbePaths: the probe paths of an entry with a header match,
// or of a weighted backend, are routed to it (or to its rule).
func TestExtrasProbePaths(t *testing.T) {
	a := gw("a", Extras{Rule: "r", Weight: 1})
	b := gw("b", Extras{Rule: "r", Weight: 1})
	b.ProbePaths = []string{"/p/healthz"}
	h := gw("h", Extras{Headers: []ValueMatch{{Name: "X", Value: "1"}}})
	h.Paths = []string{"/q"}
	h.ProbePaths = []string{"/q/healthz"}
	if err := (&Config{Services: []Service{a, b, h}}).Validate(); err != nil {
		t.Errorf("Validate: %v; want valid", err)
	}
}

// TestGatewayClass: with gateway_class set a config needs no
// [[services]]; a bad class name is an error at its key.
func TestGatewayClass(t *testing.T) {
	c, err := Load(writeConfig(t, "gateway_class = \"agimo\"\n"))
	if err != nil {
		t.Fatalf("Load = %v; want no error", err)
	}
	if c.GatewayClass != "agimo" || len(c.Services) != 0 {
		t.Errorf("got class %q, %d services; want \"agimo\", 0", c.GatewayClass, len(c.Services))
	}
	_, err = Load(writeConfig(t, "timeout = \"1s\"\ngateway_class = \"Not_A_Name\"\n"))
	if err == nil || !strings.Contains(err.Error(), ":2: gateway_class: invalid GatewayClass name") {
		t.Errorf("Load(bad class) = %v; want an error at line 2, gateway_class", err)
	}
}

// TestExtrasRoutes: entries of one host and path overlap only when their
// match conditions are equal; the weighted backends of one rule share
// their claim; an entry answering by itself names no backend; a probe
// path goes to the entry without conditions.
func TestExtrasRoutes(t *testing.T) {
	c, err := Load(writeConfig(t, "gateway_class = \"agimo\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	base := Service{Host: "a.example", Type: "deployment", Namespace: "apps", Name: "a", ServiceName: "a", ServicePort: 80}
	with := func(f func(*Service)) Service {
		s := base
		f(&s)
		return s
	}
	get := with(func(s *Service) { s.Method = "GET" })
	hdr := with(func(s *Service) { s.Headers = []ValueMatch{{Name: "X-A", Value: "1"}, {Name: "x-b", Value: "2"}} })
	hdrSwapped := with(func(s *Service) { s.Headers = []ValueMatch{{Name: "x-b", Value: "2"}, {Name: "x-a", Value: "1"}} })
	w1 := with(func(s *Service) { s.Rule, s.Weight = "r1", 1 })
	w2 := with(func(s *Service) { s.Rule, s.Weight, s.ServiceName = "r1", 3, "b" })
	other := with(func(s *Service) { s.Rule = "r2" })
	fixed := Service{Host: "a.example", Namespace: "apps", Paths: []string{"/x"}, Extras: Extras{Fixed: 500}}
	redirect := Service{Host: "a.example", Namespace: "apps", Paths: []string{"/r"}, Extras: Extras{Filters: &Filters{Redirect: &Redirect{Scheme: "https"}}}}
	probe := with(func(s *Service) { s.ProbePaths = []string{"/healthz"} })
	for _, tt := range []struct {
		name    string
		entries []Service
		wantErr string
	}{
		{"method differs", []Service{base, get}, ""},
		{"same method", []Service{get, get}, "already served"},
		{"headers in another order and case", []Service{hdr, hdrSwapped}, "already served"},
		{"one rule's weighted backends", []Service{w1, w2}, ""},
		{"two rules", []Service{w1, other}, "already served"},
		{"fixed and redirect", []Service{base, fixed, redirect}, ""},
		{"fixed without host", []Service{{Namespace: "apps", Extras: Extras{Fixed: 500}}}, "host: missing"},
		{"probe beside a method match", []Service{probe, get}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.WithServices(tt.entries)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("WithServices = %v; want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("WithServices = %v; want an error with %q", err, tt.wantErr)
			}
		})
	}
}
