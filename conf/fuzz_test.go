package conf

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics and every error it or Validate reports is
// a *Error; when Parse succeeds, Validate either fails or leaves a config
// whose hosts are normalised (NormalizeHost(h) == h, or the catch-all
// host "*"), whose paths start with "/" and end without one (but "/"), no
// (host, path) pair twice, and whose every service has a positive timeout.
func FuzzParse(f *testing.F) {
	f.Add(base)
	f.Add(base + second)
	f.Add("timeout = '5s'\n[[services]]\nhost = \"example.com\"\ntype = \"deploy\" # c\nnamespace = \"default\"\nname = \"example\"\nservice_name = \"example\"\nservice_port = 80\n")
	f.Add(replaceLine(base, 3, `host = "App.Example.com:8080"`) + replaceLine(second, 2, `host = "app.example.com."`))
	f.Add(base + "timeout = 10\naddress = '127.0.0.1:1'\ndial = 'service'\n")
	f.Add("services = [{host='a', type='sts', namespace='n', name='a', service_name='a', service_port=1}]\n")
	f.Add("[services]\nhost = 'a'\n")
	f.Add(base + "paths = ['/api/', '/v2']\nprobe_paths = ['/api/h']\n" + replaceLine(second, 2, `host = "a.example.com"`) + "paths = ['/', '/v2/x']\n")
	f.Add("note = '''\n[[services]]\n'''\n")
	f.Add("tls_secrets = ['certs/wild']\n" + base + "tls_secret = 'a-tls'\nprotocol = 'h2c'\nhttps_redirect = true\n" +
		second + "tls_passthrough = true\ntls_cert_file = '/c'\n")
	f.Fuzz(func(t *testing.T, src string) {
		c, err := Parse(strings.NewReader(src))
		if err != nil {
			checkLeaves(t, err)
			return
		}
		if err := c.Validate(); err != nil {
			checkLeaves(t, err)
			return
		}
		if c.Timeout.Duration <= 0 {
			t.Errorf("Timeout = %v; want > 0", c.Timeout.Duration)
		}
		seen := make(map[string]int)
		for i, s := range c.Services {
			// The catch-all host "*" is a host of its own, not a name.
			if h, ok := NormalizeHost(s.Host); s.Host != CatchAllHost && (!ok || h != s.Host) {
				t.Errorf("services[%d].Host = %q; NormalizeHost gives %q, %v; want itself, true", i, s.Host, h, ok)
			}
			if len(s.Paths) == 0 {
				t.Errorf("services[%d].Paths empty; want at least one", i)
			}
			for _, p := range s.Paths {
				if !strings.HasPrefix(p, "/") || (p != "/" && strings.HasSuffix(p, "/")) {
					t.Errorf("services[%d] path %q; want a leading and no trailing /", i, p)
				}
				if j, dup := seen[s.Host+" "+p]; dup {
					t.Errorf("services[%d] serves %q%s, as services[%d] does", i, s.Host, p, j)
				}
				seen[s.Host+" "+p] = i
			}
			if s.Timeout.Duration <= 0 {
				t.Errorf("services[%d].Timeout = %v; want > 0", i, s.Timeout.Duration)
			}
			if s.UpstreamTimeout.Duration <= 0 {
				t.Errorf("services[%d].UpstreamTimeout = %v; want > 0", i, s.UpstreamTimeout.Duration)
			}
			if s.ClientBodyTimeout.Duration <= 0 || s.SendTimeout.Duration <= 0 {
				t.Errorf("services[%d] ClientBodyTimeout, SendTimeout = %v, %v; want > 0", i, s.ClientBodyTimeout.Duration, s.SendTimeout.Duration)
			}
			if s.Type != KindDeployment && s.Type != KindStatefulSet {
				t.Errorf("services[%d].Type = %q; want %q or %q", i, s.Type, KindDeployment, KindStatefulSet)
			}
			if s.ServicePort < 1 || s.ServicePort > 65535 {
				t.Errorf("services[%d].ServicePort = %d; want 1-65535", i, s.ServicePort)
			}
			if s.Protocol != ProtocolAuto && s.Protocol != ProtocolHTTP1 && s.Protocol != ProtocolH2C {
				t.Errorf("services[%d].Protocol = %q; want auto, http1 or h2c", i, s.Protocol)
			}
			if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
				t.Errorf("services[%d]: tls_cert_file %q, tls_key_file %q; want both or neither", i, s.TLSCertFile, s.TLSKeyFile)
			}
			if s.TLSPassthrough && (s.TLSSecret != "" || s.TLSCertFile != "" || s.HTTPSRedirect || s.WaitingPage) {
				t.Errorf("services[%d]: tls_passthrough with a certificate, https_redirect or waiting_page", i)
			}
		}
	})
}

func checkLeaves(t *testing.T, err error) {
	t.Helper()
	for _, e := range leaves(err) {
		if ce, ok := e.(*Error); !ok || ce.Msg == "" {
			t.Errorf("error %q (%T) is not a *conf.Error with a message", e, e)
		}
	}
}

// FuzzAppendHost: AppendHost never panics, leaves dst's prefix alone, and
// when it reports ok the key it appended is lower-case, has no ':' outside
// brackets, no trailing dot, and is itself a valid host that AppendHost
// maps to itself (normalisation is idempotent).
func FuzzAppendHost(f *testing.F) {
	for _, s := range []string{
		"example.com", "Example.COM.:8080", "[::1]:80", "[2001:DB8::1]", "a..", ".", ":80",
		"[::1", "user@host", "exa%6Dple.com", "a b", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, host []byte) {
		orig := bytes.Clone(host)
		prefix := []byte("prefix")
		out, ok := AppendHost(bytes.Clone(prefix), host)
		if !bytes.Equal(host, orig) {
			t.Fatalf("AppendHost modified its input: %q -> %q", orig, host)
		}
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("AppendHost(%q, %q) = %q; dst prefix lost", prefix, host, out)
		}
		key := out[len(prefix):]
		if !ok {
			if len(key) != 0 {
				t.Errorf("AppendHost(%q) = %q, false; want nothing appended", host, key)
			}
			return
		}
		if len(key) == 0 {
			t.Fatalf("AppendHost(%q) = \"\", true; want a non-empty key", host)
		}
		if !bytes.Equal(key, bytes.ToLower(key)) {
			t.Errorf("AppendHost(%q) = %q; not lower-case", host, key)
		}
		if key[0] != '[' && bytes.IndexByte(key, ':') >= 0 {
			t.Errorf("AppendHost(%q) = %q; has ':' outside brackets", host, key)
		}
		if key[0] == '[' && key[len(key)-1] != ']' {
			t.Errorf("AppendHost(%q) = %q; IP literal does not end in ']'", host, key)
		}
		if key[len(key)-1] == '.' {
			t.Errorf("AppendHost(%q) = %q; has a trailing dot", host, key)
		}
		again, ok := AppendHost(nil, key)
		if !ok || !bytes.Equal(again, key) {
			t.Errorf("AppendHost(%q) = %q, %v; want %q, true (idempotent)", key, again, ok, key)
		}
		if s, ok := NormalizeHost(string(host)); !ok || s != string(key) {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q, true like AppendHost", host, s, ok, key)
		}
	})
}

// FuzzParseDuration: ParseDuration never panics and never returns a
// negative duration without an error.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30s", "1m30s", "5 sec", "1h 30m", "1 day", "-5s", "", "5", "9223372036854775807ns", "4611686018427387903ns 4611686018427387903ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if d != 0 {
				t.Errorf("ParseDuration(%q) = %v, %v; want 0 with an error", s, d, err)
			}
			return
		}
		if d < 0 {
			t.Errorf("ParseDuration(%q) = %v; want >= 0", s, d)
		}
	})
}
