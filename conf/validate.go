package conf

import (
	"errors"
	"fmt"
	"html/template"
	"net"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Validate checks every value, applies defaults and normalises hosts and
// types in place. It reports all problems at once, each naming the file,
// line and key, so a user fixes a config in one round.
func (c *Config) Validate() error {
	var errs []error
	add := func(key string, index int, format string, args ...any) {
		path := key
		if index >= 0 {
			path = "services." + key
		}
		errs = append(errs, &Error{
			File: c.File,
			Line: c.line(path, index),
			Key:  displayKey(strings.Split(path, "."), index),
			Msg:  fmt.Sprintf(format, args...),
		})
	}
	for _, d := range []durationKey{
		{&c.Timeout, DefaultTimeout, "timeout"},
		{&c.UpstreamTimeout, DefaultUpstreamTimeout, "upstream_timeout"},
		{&c.ClientHeaderTimeout, DefaultClientHeaderTimeout, "client_header_timeout"},
		{&c.ClientBodyTimeout, DefaultClientBodyTimeout, "client_body_timeout"},
		{&c.SendTimeout, DefaultSendTimeout, "send_timeout"},
	} {
		d.apply(func(msg string) { add(d.key, -1, "%s", msg) })
	}
	if !c.MaxHeaderSize.Set {
		c.MaxHeaderSize.Bytes = DefaultMaxHeaderSize
	} else if c.MaxHeaderSize.Bytes < 1<<10 || c.MaxHeaderSize.Bytes > 1<<20 {
		add("max_header_size", -1, "must be between 1KiB and 1MiB, got %d bytes", c.MaxHeaderSize.Bytes)
	}
	if c.line("max_connections", -1) == 0 && c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	} else if c.MaxConnections < 1 {
		add("max_connections", -1, "must be at least 1")
	}
	if c.line("max_parked", -1) == 0 && c.MaxParked == 0 {
		c.MaxParked = DefaultMaxParked
	} else if c.MaxParked < 1 {
		add("max_parked", -1, "must be at least 1")
	}
	switch c.RequestID {
	case "":
		c.RequestID = RequestIDTrust
	case RequestIDTrust, RequestIDReplace:
	default:
		add("request_id", -1, "unknown request_id %q (want \"trust\" or \"replace\")", c.RequestID)
	}
	errs = append(errs, c.validateTLSSecrets()...)
	if c.IngressClass != "" {
		for _, m := range validation.IsDNS1123Subdomain(c.IngressClass) {
			add("ingress_class", -1, "invalid IngressClass name %q: %s", c.IngressClass, m)
		}
	}
	if c.GatewayClass != "" {
		for _, m := range validation.IsDNS1123Subdomain(c.GatewayClass) {
			add("gateway_class", -1, "invalid GatewayClass name %q: %s", c.GatewayClass, m)
		}
	}
	if len(c.Services) == 0 && c.IngressClass == "" && c.GatewayClass == "" {
		errs = append(errs, &Error{File: c.File, Key: "services", Msg: "at least one [[services]] entry is required"})
	}
	validHost := make([]bool, len(c.Services))
	for i := range c.Services {
		s := &c.Services[i]
		missing := func(key, v string) bool {
			if v == "" && s.AnswersItself() && key != "host" {
				// A redirect or fixed answer has no backend (extras.go).
				return true
			}
			if v == "" {
				// The line of an empty value, else of the [[services]] header.
				line := c.line("services."+key, i)
				if line == 0 {
					line = c.line("services", i)
				}
				errs = append(errs, &Error{
					File: c.File, Line: line,
					Key: displayKey([]string{"services", key}, i), Msg: "missing (required)",
				})
				return true
			}
			return false
		}

		if !missing("host", s.Host) {
			// "*.example.com" matches any one label before example.com,
			// as a Kubernetes Ingress wildcard does; exact hosts win.
			rest, wildcard := strings.CutPrefix(s.Host, "*.")
			h, ok := NormalizeHost(rest)
			if wildcard {
				h, ok = "*."+h, ok && strings.Contains(h, ".")
			}
			if s.Host == CatchAllHost {
				// An Ingress's defaultBackend: any host no other entry
				// claims (route.Table.Lookup tries it last).
				h, ok = CatchAllHost, true
			}
			switch {
			case !ok:
				add("host", i, "invalid host %q (want a DNS name such as \"app.example.com\", without scheme or path)", s.Host)
			default:
				// Entries may share a host with different paths
				// (validateRoutes).
				validHost[i] = true
				s.Host = h
			}
		}
		// An entry that answers by itself (a Gateway API redirect or fixed
		// 500, extras.go) has no workload or Service to name.
		backendless := s.AnswersItself()
		if !backendless && !missing("type", s.Type) {
			switch strings.ToLower(s.Type) {
			case "deployment", "deploy":
				s.Type = KindDeployment
			case "statefulset", "sts":
				s.Type = KindStatefulSet
			default:
				add("type", i, "unknown type %q (want deployment, deploy, statefulset or sts)", s.Type)
			}
		}
		if !missing("namespace", s.Namespace) {
			for _, m := range validation.IsDNS1123Label(s.Namespace) {
				add("namespace", i, "invalid namespace %q: %s", s.Namespace, m)
			}
		}
		if !backendless && !missing("name", s.Name) {
			for _, m := range validation.IsDNS1123Subdomain(s.Name) {
				add("name", i, "invalid name %q: %s", s.Name, m)
			}
		}
		if !backendless && !missing("service_name", s.ServiceName) {
			for _, m := range validation.IsDNS1123Label(s.ServiceName) {
				add("service_name", i, "invalid service_name %q: %s", s.ServiceName, m)
			}
		}
		if backendless && s.ServicePort == 0 {
			// nothing to check
		} else if c.line("services.service_port", i) == 0 && s.ServicePort == 0 {
			missing("service_port", "")
		} else if s.ServicePort < 1 || s.ServicePort > 65535 {
			add("service_port", i, "port %d out of range 1-65535", s.ServicePort)
		}
		for _, d := range []durationKey{
			{&s.Timeout, c.Timeout.Duration, "timeout"},
			{&s.UpstreamTimeout, c.UpstreamTimeout.Duration, "upstream_timeout"},
			{&s.ClientBodyTimeout, c.ClientBodyTimeout.Duration, "client_body_timeout"},
			{&s.SendTimeout, c.SendTimeout.Duration, "send_timeout"},
		} {
			d.apply(func(msg string) { add(d.key, i, "%s", msg) })
		}
		if s.Address != "" {
			if err := checkAddress(s.Address); err != nil {
				add("address", i, "%v", err)
			}
		}
		if c.line("services.max_parked", i) == 0 && s.MaxParked == 0 {
			s.MaxParked = c.MaxParked
		} else if s.MaxParked < 1 {
			add("max_parked", i, "must be at least 1")
		}
		if c.line("services.min_replicas", i) == 0 && s.MinReplicas == 0 {
			s.MinReplicas = 1
		} else if s.MinReplicas < 1 {
			add("min_replicas", i, "must be at least 1")
		}
		if s.TunnelIdleTimeout.Set && s.TunnelIdleTimeout.Duration <= 0 {
			add("tunnel_idle_timeout", i, "must be positive")
		}
		if s.IdleAfter.Set && s.IdleAfter.Duration <= 0 {
			add("idle_after", i, "must be positive")
		}
		if s.WaitingPageTemplate != "" {
			if _, err := template.New("waiting").Parse(s.WaitingPageTemplate); err != nil {
				add("waiting_page_template", i, "invalid template: %v", err)
			}
		}
		for _, p := range s.ProbePaths {
			if !strings.HasPrefix(p, "/") {
				add("probe_paths", i, "path %q must start with /", p)
			}
		}
		switch s.Dial {
		case "":
			s.Dial = DialEndpoints
		case DialEndpoints:
		case DialService:
			if s.Address != "" {
				add("dial", i, "dial = \"service\" conflicts with address: set one of them")
			}
		default:
			add("dial", i, "unknown dial %q (want \"endpoints\" or \"service\")", s.Dial)
		}
		if s.TLSPassthrough && s.ColdStartHeader != nil && *s.ColdStartHeader {
			// The connection stays encrypted: no header can be added.
			add("cold_start_header", i, "not allowed with tls_passthrough = true: Agimo never sees the responses inside the connection")
		}
		c.validateServiceTLS(i, add)
		c.validatePaths(i, add)
		c.validateExtras(i, add)
	}
	errs = append(errs, c.validateRoutes(validHost)...)
	return errors.Join(errs...)
}

func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("invalid address %q: empty host", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("invalid address %q: port out of range 1-65535", addr)
	}
	return nil
}

// TargetAddr is where requests for s go when it is not sent to endpoints:
// the address override, or the Service's cluster DNS name for dial =
// "service". It is "" when requests go straight to ready endpoints.
func (s *Service) TargetAddr() string {
	switch {
	case s.Address != "":
		return s.Address
	case s.Dial == DialService:
		return net.JoinHostPort(s.ServiceName+"."+s.Namespace+".svc", strconv.Itoa(s.ServicePort))
	}
	return ""
}

// durationKey is a duration setting: absent, it takes def (a default, or
// the top-level value for a per-service override); present, it must be
// positive.
type durationKey struct {
	v   *Duration
	def time.Duration
	key string
}

func (d durationKey) apply(fail func(msg string)) {
	if !d.v.Set {
		d.v.Duration = d.def
	} else if d.v.Duration <= 0 {
		fail("must be positive")
	}
}
