package certs

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/agimo/agimo/conf"
)

// source is one configured certificate: a Secret or a file pair.
type source struct {
	ns, name          string // a kubernetes.io/tls Secret
	certFile, keyFile string // or a PEM file pair
}

func (s source) isFile() bool { return s.certFile != "" }

// id names the source in logs and in metric labels: "secret:NS/NAME" or
// "file:CERTPATH".
func (s source) id() string {
	if s.isFile() {
		return "file:" + s.certFile
	}
	return "secret:" + s.ns + "/" + s.name
}

// key identifies the source: its id, and for a pair also its key file.
func (s source) key() string {
	if s.isFile() {
		return s.id() + "\x00" + s.keyFile
	}
	return s.id()
}

// sourcesOf lists cfg's certificates in the order that decides the
// default certificate (for a handshake without SNI, or for a name none
// covers): services in config order, each its tls_secret then its file
// pair, then the top-level tls_secrets. A source named twice counts once,
// at its first place.
func sourcesOf(cfg *conf.Config) []source {
	var out []source
	seen := make(map[string]bool)
	add := func(s source) {
		if !seen[s.key()] {
			seen[s.key()] = true
			out = append(out, s)
		}
	}
	for _, svc := range cfg.Services {
		if svc.TLSPassthrough {
			continue // validation forbids certificates on these anyway
		}
		if svc.TLSSecret != "" {
			add(source{ns: svc.Namespace, name: svc.TLSSecret})
		}
		if svc.TLSCertFile != "" && svc.TLSKeyFile != "" {
			add(source{certFile: svc.TLSCertFile, keyFile: svc.TLSKeyFile})
		}
	}
	for _, e := range cfg.TLSSecrets {
		ns, name, ok := cutSecret(e)
		if ok {
			add(source{ns: ns, name: name})
		}
	}
	return out
}

func cutSecret(e string) (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(e, "/")
	return ns, name, ok && ns != "" && name != ""
}

func hasSecret(srcs []source) bool {
	for _, s := range srcs {
		if !s.isFile() {
			return true
		}
	}
	return false
}

// parsePair parses a PEM certificate chain and its key with crypto/tls,
// which also checks that the key matches the leaf's public key.
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil { // set by X509KeyPair since Go 1.23; never nil here
		return nil, fmt.Errorf("no leaf certificate")
	}
	return &c, nil
}
