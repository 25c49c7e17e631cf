package conf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// validateTLSSecrets checks the top-level tls_secrets: each entry is
// "NAMESPACE/NAME" of a Secret, named as Kubernetes allows, once.
func (c *Config) validateTLSSecrets() []error {
	var errs []error
	seen := make(map[string]int, len(c.TLSSecrets))
	for i, e := range c.TLSSecrets {
		fail := func(format string, args ...any) {
			errs = append(errs, &Error{
				File: c.File, Line: c.line("tls_secrets", -1),
				Key: fmt.Sprintf("tls_secrets[%d]", i), Msg: fmt.Sprintf(format, args...),
			})
		}
		ns, name, ok := strings.Cut(e, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			fail("invalid entry %q: want \"NAMESPACE/NAME\" of a kubernetes.io/tls Secret", e)
			continue
		}
		bad := false
		for _, m := range validation.IsDNS1123Label(ns) {
			fail("invalid namespace %q in %q: %s", ns, e, m)
			bad = true
		}
		for _, m := range validation.IsDNS1123Subdomain(name) {
			fail("invalid Secret name %q in %q: %s", name, e, m)
			bad = true
		}
		if bad {
			continue
		}
		if j, dup := seen[e]; dup {
			fail("duplicate entry %q (same as tls_secrets[%d])", e, j)
			continue
		}
		seen[e] = i
	}
	return errs
}

// HasCertificates reports whether any certificate is configured, from a
// Secret or from files: the TLS listener opens only then.
func (c *Config) HasCertificates() bool {
	if len(c.TLSSecrets) > 0 {
		return true
	}
	for _, s := range c.Services {
		if s.TLSSecret != "" || s.TLSCertFile != "" {
			return true
		}
	}
	return false
}

// validateServiceTLS checks service i's TLS and protocol keys and sets the
// protocol's default. add reports an error at one of the service's keys.
func (c *Config) validateServiceTLS(i int, add func(key string, index int, format string, args ...any)) {
	s := &c.Services[i]
	if s.TLSSecret != "" {
		for _, m := range validation.IsDNS1123Subdomain(s.TLSSecret) {
			add("tls_secret", i, "invalid Secret name %q: %s", s.TLSSecret, m)
		}
	} else if c.line("services.tls_secret", i) > 0 {
		add("tls_secret", i, "empty: name a kubernetes.io/tls Secret in namespace %q, or remove the key", s.Namespace)
	}
	for _, k := range []struct{ key, v, other, otherV string }{
		{"tls_cert_file", s.TLSCertFile, "tls_key_file", s.TLSKeyFile},
		{"tls_key_file", s.TLSKeyFile, "tls_cert_file", s.TLSCertFile},
	} {
		switch {
		case k.v == "" && c.line("services."+k.key, i) > 0:
			add(k.key, i, "empty path: set it, or remove the key")
		case k.v != "" && k.otherV == "":
			add(k.key, i, "%s is set but %s is not: give both or neither", k.key, k.other)
		}
	}
	switch p := strings.ToLower(s.Protocol); p {
	case "":
		s.Protocol = ProtocolAuto
	case ProtocolAuto, ProtocolHTTP1, ProtocolH2C:
		s.Protocol = p
	default:
		add("protocol", i, "unknown protocol %q (want \"auto\", \"http1\" or \"h2c\")", s.Protocol)
	}
	if s.TLSPassthrough {
		// A passthrough connection is spliced to the app still encrypted:
		// Agimo presents no certificate and never sees its HTTP requests.
		why := "a tls_passthrough service's TLS is terminated by the app, not by Agimo, so Agimo "
		for _, k := range []struct {
			key    string
			set    bool
			reason string
		}{
			{"tls_secret", s.TLSSecret != "", "presents no certificate for it (the app presents its own)"},
			{"tls_cert_file", s.TLSCertFile != "", "presents no certificate for it (the app presents its own)"},
			{"tls_key_file", s.TLSKeyFile != "", "presents no certificate for it (the app presents its own)"},
			{"https_redirect", s.HTTPSRedirect, "cannot vouch that https on its TLS port reaches this app; redirect in the app"},
			{"waiting_page", s.WaitingPage, "never sees the requests inside the connection and cannot answer one with a page"},
		} {
			if k.set {
				add(k.key, i, "not allowed with tls_passthrough = true: %s%s", why, k.reason)
			}
		}
	} else if s.HTTPSRedirect && !c.HasCertificates() {
		add("https_redirect", i, "no certificate is configured (tls_secret, tls_cert_file or top-level tls_secrets), so the TLS port is closed and the redirect would lead nowhere")
	}
}

// CheckCertFiles loads every tls_cert_file/tls_key_file pair as the TLS
// listener will (crypto/tls), for --check: a missing file, bad PEM or a
// key that does not match its certificate is reported at the service's
// tls_cert_file key. Relative paths are relative to the working directory.
func (c *Config) CheckCertFiles() error {
	var errs []error
	for i, s := range c.Services {
		if s.TLSCertFile == "" || s.TLSKeyFile == "" {
			continue
		}
		if _, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile); err != nil {
			errs = append(errs, &Error{
				File: c.File, Line: c.line("services.tls_cert_file", i),
				Key: displayKey([]string{"services", "tls_cert_file"}, i),
				Msg: fmt.Sprintf("cannot load the pair %s, %s: %v", s.TLSCertFile, s.TLSKeyFile, err),
			})
		}
	}
	return errors.Join(errs...)
}
