package conf

import (
	"strings"
	"testing"
)

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
