package conf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeConfig writes src to a fresh file and returns its path.
func writeConfig(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agimo.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// leaves flattens errors.Join trees into their leaf errors.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

func TestLoadRustOriginalConfigs(t *testing.T) {
	tests := []struct {
		file      string
		timeout   time.Duration
		namespace string
	}{
		{"testdata/rust-example.toml", 5 * time.Second, "default"},
		{"testdata/rust-example2.toml", 30 * time.Second, "example"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := Load(tt.file)
			if err != nil {
				t.Fatalf("Load(%q) = %v; want no error", tt.file, err)
			}
			if c.File != tt.file {
				t.Errorf("File = %q; want %q", c.File, tt.file)
			}
			if c.Timeout.Duration != tt.timeout {
				t.Errorf("Timeout = %v; want %v", c.Timeout.Duration, tt.timeout)
			}
			want := Service{
				Host: "example.com", Type: KindDeployment, Namespace: tt.namespace,
				Name: "example", ServiceName: "example", ServicePort: 80,
				Timeout:           Duration{Duration: tt.timeout},
				UpstreamTimeout:   Duration{Duration: DefaultUpstreamTimeout},
				ClientBodyTimeout: Duration{Duration: DefaultClientBodyTimeout},
				SendTimeout:       Duration{Duration: DefaultSendTimeout},
				Dial:              DialEndpoints,
				MaxParked:         DefaultMaxParked,
				MinReplicas:       1,
				Protocol:          ProtocolAuto,
				Paths:             []string{"/"},
			}
			if len(c.Services) != 1 {
				t.Fatalf("got %d services; want 1", len(c.Services))
			}
			if got := c.Services[0]; !reflect.DeepEqual(got, want) {
				t.Errorf("service = %+v; want %+v", got, want)
			}
			if got := c.Services[0].TargetAddr(); got != "" {
				t.Errorf("TargetAddr() = %q; want \"\" (straight to endpoints)", got)
			}
		})
	}
}

// TestValidateDefaults checks what Validate fills in and normalises.
func TestValidateDefaults(t *testing.T) {
	const src = `
[[services]]
host = "App.Example.COM.:8443"
type = "sts"
namespace = "ns"
name = "a"
service_name = "a"
service_port = 8080

[[services]]
host = "b.example.com"
type = "Deploy"
namespace = "ns"
name = "b"
service_name = "b"
service_port = 80
timeout = "1 min"
upstream_timeout = "5s"
dial = "service"

[[services]]
host = "[2001:DB8::1]:80"
type = "StatefulSet"
namespace = "ns"
name = "c"
service_name = "c"
service_port = 80
address = "127.0.0.1:9000"
`
	c, err := Parse(strings.NewReader(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got, want := c.Timeout.Duration, DefaultTimeout; got != want {
		t.Errorf("Timeout = %v; want %v", got, want)
	}
	if got, want := c.UpstreamTimeout.Duration, DefaultUpstreamTimeout; got != want {
		t.Errorf("UpstreamTimeout = %v; want %v", got, want)
	}
	if got, want := c.ClientBodyTimeout.Duration, DefaultClientBodyTimeout; got != want {
		t.Errorf("ClientBodyTimeout = %v; want %v", got, want)
	}
	if got, want := c.SendTimeout.Duration, DefaultSendTimeout; got != want {
		t.Errorf("SendTimeout = %v; want %v", got, want)
	}
	if c.Timeout.Set {
		t.Errorf("Timeout.Set = true; want false for an absent key")
	}
	tests := []struct {
		host, typ, dial, target string
		timeout, upstream       time.Duration
	}{
		{"app.example.com", KindStatefulSet, DialEndpoints, "", DefaultTimeout, DefaultUpstreamTimeout},
		{"b.example.com", KindDeployment, DialService, "b.ns.svc:80", time.Minute, 5 * time.Second},
		{"[2001:db8::1]", KindStatefulSet, DialEndpoints, "127.0.0.1:9000", DefaultTimeout, DefaultUpstreamTimeout},
	}
	if len(c.Services) != len(tests) {
		t.Fatalf("got %d services; want %d", len(c.Services), len(tests))
	}
	for i, tt := range tests {
		s := c.Services[i]
		if s.Host != tt.host {
			t.Errorf("services[%d].Host = %q; want %q", i, s.Host, tt.host)
		}
		if s.Type != tt.typ {
			t.Errorf("services[%d].Type = %q; want %q", i, s.Type, tt.typ)
		}
		if s.Dial != tt.dial {
			t.Errorf("services[%d].Dial = %q; want %q", i, s.Dial, tt.dial)
		}
		if got := s.TargetAddr(); got != tt.target {
			t.Errorf("services[%d].TargetAddr() = %q; want %q", i, got, tt.target)
		}
		if s.Timeout.Duration != tt.timeout {
			t.Errorf("services[%d].Timeout = %v; want %v", i, s.Timeout.Duration, tt.timeout)
		}
		if s.UpstreamTimeout.Duration != tt.upstream {
			t.Errorf("services[%d].UpstreamTimeout = %v; want %v", i, s.UpstreamTimeout.Duration, tt.upstream)
		}
	}

	// Validate is idempotent: a second run changes nothing.
	before := slices.Clone(c.Services)
	if err := c.Validate(); err != nil {
		t.Fatalf("second Validate: %v", err)
	}
	if !reflect.DeepEqual(before, c.Services) {
		t.Errorf("second Validate changed services: got %+v; want %+v", c.Services, before)
	}
}

func TestServiceTimeoutInheritsTopLevel(t *testing.T) {
	tests := []struct {
		name, top, svc string
		want           time.Duration
	}{
		{"both absent", "", "", DefaultTimeout},
		{"top only", `timeout = "7s"`, "", 7 * time.Second},
		{"service overrides", `timeout = "7s"`, `timeout = "2m"`, 2 * time.Minute},
		{"service only", "", `timeout = "1h 30m"`, 90 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.top + "\n[[services]]\nhost='a'\ntype='deploy'\nnamespace='n'\nname='a'\nservice_name='a'\nservice_port=1\n" + tt.svc + "\n"
			c, err := Load(writeConfig(t, src))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := c.Services[0].Timeout.Duration; got != tt.want {
				t.Errorf("services[0].Timeout = %v; want %v", got, tt.want)
			}
		})
	}
}

// client_body_timeout and send_timeout: nginx's 60 s by default, a
// top-level value for every service, a service's own value for it alone.
func TestClientTimeoutsInheritTopLevel(t *testing.T) {
	for _, key := range []string{"client_body_timeout", "send_timeout"} {
		get := func(c *Config) (top, svc time.Duration) {
			if key == "send_timeout" {
				return c.SendTimeout.Duration, c.Services[0].SendTimeout.Duration
			}
			return c.ClientBodyTimeout.Duration, c.Services[0].ClientBodyTimeout.Duration
		}
		tests := []struct {
			name, top, svc string
			wantTop, want  time.Duration
		}{
			{"both absent", "", "", time.Minute, time.Minute},
			{"top only", key + ` = "7s"`, "", 7 * time.Second, 7 * time.Second},
			{"service overrides", key + ` = "7s"`, key + ` = "2m"`, 7 * time.Second, 2 * time.Minute},
			{"service only", "", key + ` = "500ms"`, time.Minute, 500 * time.Millisecond},
		}
		for _, tt := range tests {
			t.Run(key+"/"+tt.name, func(t *testing.T) {
				src := tt.top + "\n[[services]]\nhost='a'\ntype='deploy'\nnamespace='n'\nname='a'\nservice_name='a'\nservice_port=1\n" + tt.svc + "\n"
				c, err := Load(writeConfig(t, src))
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				top, svc := get(c)
				if top != tt.wantTop {
					t.Errorf("top-level %s = %v; want %v", key, top, tt.wantTop)
				}
				if svc != tt.want {
					t.Errorf("services[0].%s = %v; want %v", key, svc, tt.want)
				}
			})
		}
	}
}

// base is a valid one-service config; its line numbers are used below.
const base = `timeout = "5s"
[[services]]
host = "a.example.com"
type = "deploy"
namespace = "default"
name = "a"
service_name = "a"
service_port = 80
`

// second is a valid second service, on lines 9 (header) to 15.
const second = `[[services]]
host = "b.example.com"
type = "deploy"
namespace = "default"
name = "b"
service_name = "b"
service_port = 80
`

// replaceLine replaces line n (1-based) of src; an empty repl deletes it.
func replaceLine(src string, n int, repl string) string {
	lines := strings.Split(src, "\n")
	if repl == "" {
		lines = slices.Delete(lines, n-1, n)
	} else {
		lines[n-1] = repl
	}
	return strings.Join(lines, "\n")
}

type wantErr struct {
	line int
	key  string
	msg  string // substring of Error.Msg
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []wantErr
	}{
		{"unknown key at top level", "timeot = \"5s\"\n" + base[len("timeout = \"5s\"\n"):],
			[]wantErr{{1, "timeot", "unknown key"}}},
		{"unknown key in second service", base + replaceLine(second, 6, `servcie_name = "b"`),
			[]wantErr{{14, "services[1].servcie_name", "unknown key"}, {9, "services[1].service_name", "missing"}}},
		{"same unknown key in two services, each once", replaceLine(base, 8, "service_port = 80\nport = 1") + replaceLine(second, 7, "service_port = 80\nport = 2"),
			[]wantErr{{9, "services[0].port", "unknown key"}, {17, "services[1].port", "unknown key"}}},
		{"unknown table", base + "[metrics]\nport = 9\n",
			[]wantErr{{9, "metrics", "unknown key"}}},
		{"bad type value", replaceLine(base, 4, `type = "cronjob"`),
			[]wantErr{{4, "services[0].type", `unknown type "cronjob"`}}},
		{"port 0", replaceLine(base, 8, "service_port = 0"),
			[]wantErr{{8, "services[0].service_port", "port 0 out of range 1-65535"}}},
		{"port 70000", replaceLine(base, 8, "service_port = 70000"),
			[]wantErr{{8, "services[0].service_port", "port 70000 out of range"}}},
		{"port -1", replaceLine(base, 8, "service_port = -1"),
			[]wantErr{{8, "services[0].service_port", "port -1 out of range"}}},
		{"port given as string", replaceLine(base, 8, `service_port = "80"`),
			[]wantErr{{8, "services[0].service_port", `want an integer, not the string "80"`}}},
		{"bad duration unit", replaceLine(base, 1, `timeout = "5 parsecs"`),
			[]wantErr{{1, "timeout", `unknown unit "parsecs"`}}},
		{"empty duration", replaceLine(base, 1, `timeout = ""`),
			[]wantErr{{1, "timeout", "empty duration"}}},
		{"negative duration", replaceLine(base, 1, `timeout = "-5s"`),
			[]wantErr{{1, "timeout", "negative"}}},
		{"zero duration", replaceLine(base, 1, `timeout = "0s"`),
			[]wantErr{{1, "timeout", "must be positive"}}},
		{"integer for a duration", replaceLine(base, 1, "timeout = 5"),
			[]wantErr{{1, "timeout", `a duration is a string with a unit, such as "5s", not the number 5`}}},
		{"float for a duration", replaceLine(base, 1, "timeout = 1.5"),
			[]wantErr{{1, "timeout", "not the float 1.5"}}},
		{"integer for a duration in first of two services", base + "timeout = 10\n" + second + "timeout = \"10s\"\n",
			[]wantErr{{9, "services[0].timeout", "not the number 10"}}},
		{"bad duration in second service", base + "timeout = \"10s\"\n" + second + "upstream_timeout = \"10 fortnights\"\n",
			[]wantErr{{17, "services[1].upstream_timeout", `unknown unit "fortnights"`}}},
		{"zero service timeout", base + "timeout = \"0ms\"\n",
			[]wantErr{{9, "services[0].timeout", "must be positive"}}},
		{"zero client_body_timeout", "client_body_timeout = \"0s\"\n" + base,
			[]wantErr{{1, "client_body_timeout", "must be positive"}}},
		{"bad send_timeout", "send_timeout = \"1 fortnight\"\n" + base,
			[]wantErr{{1, "send_timeout", `unknown unit "fortnight"`}}},
		{"zero service client_body_timeout", base + "client_body_timeout = \"0s\"\n",
			[]wantErr{{9, "services[0].client_body_timeout", "must be positive"}}},
		{"integer service send_timeout", base + second + "send_timeout = 60\n",
			[]wantErr{{16, "services[1].send_timeout", "not the number 60"}}},
		{"zero service send_timeout", base + "send_timeout = \"0ms\"\n",
			[]wantErr{{9, "services[0].send_timeout", "must be positive"}}},
		{"duplicate host after normalisation", replaceLine(base, 3, `host = "App.Example.com:8080"`) + replaceLine(second, 2, `host = "app.example.com."`),
			[]wantErr{{10, "services[1].host", `path "/" of host "app.example.com" is already served by `}}},
		{"host with scheme", replaceLine(base, 3, `host = "http://x"`),
			[]wantErr{{3, "services[0].host", `invalid host "http://x"`}}},
		{"host with space", replaceLine(base, 3, `host = "a b"`),
			[]wantErr{{3, "services[0].host", `invalid host "a b"`}}},
		{"empty host", replaceLine(base, 3, `host = ""`),
			[]wantErr{{3, "services[0].host", "missing (required)"}}},
		{"host given as integer", replaceLine(base, 3, "host = 5"),
			[]wantErr{{3, "services[0].host", "want a string, not the integer 5"}}},
		{"invalid namespace", replaceLine(base, 5, `namespace = "Default"`),
			[]wantErr{{5, "services[0].namespace", `invalid namespace "Default"`}}},
		{"invalid name", replaceLine(base, 6, `name = "a_b"`),
			[]wantErr{{6, "services[0].name", `invalid name "a_b"`}}},
		{"invalid service_name", replaceLine(base, 7, `service_name = "a.b"`),
			[]wantErr{{7, "services[0].service_name", `invalid service_name "a.b"`}}},
		{"address without port", base + `address = "localhost"` + "\n",
			[]wantErr{{9, "services[0].address", `invalid address "localhost": want host:port`}}},
		{"address without host", base + `address = ":80"` + "\n",
			[]wantErr{{9, "services[0].address", "empty host"}}},
		{"address port 0", base + `address = "localhost:0"` + "\n",
			[]wantErr{{9, "services[0].address", "port out of range"}}},
		{"address port not a number", base + `address = "localhost:http"` + "\n",
			[]wantErr{{9, "services[0].address", "port out of range"}}},
		{"bad dial", base + `dial = "mesh"` + "\n",
			[]wantErr{{9, "services[0].dial", `unknown dial "mesh"`}}},
		{"dial service with address", base + `address = "127.0.0.1:80"` + "\n" + `dial = "service"` + "\n",
			[]wantErr{{10, "services[0].dial", "conflicts with address"}}},
		{"bool given as string", "trust_forwarded_headers = \"yes\"\n" + base,
			[]wantErr{{1, "trust_forwarded_headers", `want true or false, not the string "yes"`}}},
		{"services as a plain table", "[services]\nhost = 'a'\n",
			[]wantErr{{1, "services", "must be [[services]] entries, not a table"}}},
		{"no services", `timeout = "5s"` + "\n",
			[]wantErr{{0, "services", "at least one [[services]] entry is required"}}},
		{"TOML syntax error", base + "host = \n",
			[]wantErr{{9, "services[0].host", "expected value"}}},
		{"duplicate key", base + "host = 'b'\n",
			[]wantErr{{9, "services[0].host", "has already been defined"}}},
		{"TOML syntax error at top level", "timeout = '5s\n" + base[len("timeout = \"5s\"\n"):],
			[]wantErr{{1, "timeout", "strings cannot contain newlines"}}},
		{"several errors at once", `timeout = "5 parsecs"
bogus = true
[[services]]
host = "http://a"
type = "job"
namespace = "default"
name = "a"
service_port = 70000
[[services]]
host = "b"
type = "sts"
namespace = "default"
name = "b"
service_name = "b"
service_port = 80
dial = "mesh"
`, []wantErr{
			{1, "timeout", "unknown unit"},
			{2, "bogus", "unknown key"},
		}},
		{"several validation errors at once", `timeout = "0s"
bogus = true
[[services]]
host = "http://a"
type = "job"
namespace = "default"
name = "a"
service_port = 70000
[[services]]
host = "b"
type = "sts"
namespace = "default"
name = "b"
service_name = "b"
service_port = 80
dial = "mesh"
`, []wantErr{
			{1, "timeout", "must be positive"},
			{2, "bogus", "unknown key"},
			{3, "services[0].service_name", "missing"},
			{4, "services[0].host", "invalid host"},
			{5, "services[0].type", "unknown type"},
			{8, "services[0].service_port", "out of range"},
			{16, "services[1].dial", "unknown dial"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.src)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want errors %v", c, tt.want)
			}
			if c != nil {
				t.Errorf("Load returned a config along with error %v", err)
			}
			checkErrors(t, path, err, tt.want)
		})
	}
}

// checkErrors asserts that err is exactly the errors in want, in any order,
// each an *Error naming file, line and key.
func checkErrors(t *testing.T, file string, err error, want []wantErr) {
	t.Helper()
	var got []*Error
	for _, e := range leaves(err) {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Errorf("error %q (%T) is not a *conf.Error", e, e)
			continue
		}
		got = append(got, ce)
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(e *Error) bool {
			return e.Line == w.line && e.Key == w.key && strings.Contains(e.Msg, w.msg)
		})
		if i < 0 {
			t.Errorf("missing error at line %d, key %q, containing %q; got:\n%v", w.line, w.key, w.msg, err)
			continue
		}
		e := got[i]
		got = slices.Delete(got, i, i+1)
		if e.File != file {
			t.Errorf("error %q: File = %q; want %q", e, e.File, file)
		}
		prefix := file + ":"
		if w.line > 0 {
			prefix += fmt.Sprint(w.line) + ":"
		}
		prefix += " "
		if w.key != "" {
			prefix += w.key + ": "
		}
		if s := e.Error(); !strings.HasPrefix(s, prefix) {
			t.Errorf("error text = %q; want prefix %q", s, prefix)
		}
		if !strings.Contains(err.Error(), e.Error()) {
			t.Errorf("joined error text %q does not contain %q", err, e)
		}
	}
	for _, e := range got {
		t.Errorf("unexpected error: %v", e)
	}
}

// TestMissingFields drops each required key from base in turn.
func TestMissingFields(t *testing.T) {
	for line, key := range map[int]string{3: "host", 4: "type", 5: "namespace", 6: "name", 7: "service_name", 8: "service_port"} {
		t.Run(key, func(t *testing.T) {
			path := writeConfig(t, replaceLine(base, line, ""))
			_, err := Load(path)
			// The error points at the [[services]] header, line 2.
			checkErrors(t, path, err, []wantErr{{2, "services[0]." + key, "missing (required)"}})
		})
		t.Run(key+" in second service", func(t *testing.T) {
			path := writeConfig(t, base+replaceLine(second, line-1, ""))
			_, err := Load(path)
			checkErrors(t, path, err, []wantErr{{9, "services[1]." + key, "missing (required)"}})
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(%q) = %v; want an error naming the file", path, err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(%q) = %v; want errors.Is(err, os.ErrNotExist)", path, err)
	}
}

// TestParseUnknownKeysKeepsConfig: Parse reports unknown keys but still
// returns the decoded config, so that Load can validate it too.
func TestParseUnknownKeysKeepsConfig(t *testing.T) {
	c, err := Parse(strings.NewReader(base + "hots = 'x'\n"))
	if err == nil {
		t.Fatal("Parse: got no error; want unknown key")
	}
	if c == nil || len(c.Services) != 1 || c.Services[0].Host != "a.example.com" {
		t.Fatalf("Parse = %+v; want the decoded config", c)
	}
	if got, want := err.Error(), "9: services[0].hots: unknown key"; got != want {
		t.Errorf("err = %q; want %q", got, want)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.toml", Line: 3, Key: "services[0].host", Msg: "bad"}, "a.toml:3: services[0].host: bad"},
		{Error{File: "a.toml", Key: "services", Msg: "bad"}, "a.toml: services: bad"},
		{Error{Line: 3, Msg: "bad"}, "3: bad"},
		{Error{Key: "timeout", Msg: "bad"}, "timeout: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q; want %q", tt.e, got, tt.want)
		}
	}
}

// TestKeyLines checks the line finder against TOML it must not be fooled by.
func TestKeyLines(t *testing.T) {
	const src = `# comment = 1
timeout = "5s" # trailing = comment
note = """
host = "not a key"
"""
[[services]] # first
"host" = 'a'

[[ services ]]
  host = 'b'
`
	c := &Config{lines: keyLines([]byte(src))}
	tests := []struct {
		key   string
		index int
		want  int
	}{
		{"timeout", -1, 2},
		{"note", -1, 3},
		{"host", -1, 0},
		{"comment", -1, 0},
		{"services", 0, 6},
		{"services.host", 0, 7},
		{"services", 1, 9},
		{"services.host", 1, 10},
		{"services.host", 2, 0},
	}
	for _, tt := range tests {
		if got := c.line(tt.key, tt.index); got != tt.want {
			t.Errorf("line(%q, %d) = %d; want %d", tt.key, tt.index, got, tt.want)
		}
	}
}

// The limits have sane defaults, accept sizes as integers or with units,
// and reject nonsense with the key's line.
func TestLimits(t *testing.T) {
	c, err := Parse(strings.NewReader(`
max_header_size = "32KiB"
max_request_body = 1048576
client_header_timeout = "5s"
max_connections = 10
max_parked = 50
[[services]]
host = "a.test"
type = "sts"
namespace = "n"
name = "a"
service_name = "a"
service_port = 80
max_parked = 7
[[services]]
host = "b.test"
type = "sts"
namespace = "n"
name = "b"
service_name = "b"
service_port = 80
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxHeaderSize.Bytes != 32<<10 || c.MaxRequestBody.Bytes != 1<<20 || c.ClientHeaderTimeout.Duration != 5*time.Second || c.MaxConnections != 10 {
		t.Errorf("limits = %+v %+v %v %d; want 32KiB 1MiB 5s 10", c.MaxHeaderSize, c.MaxRequestBody, c.ClientHeaderTimeout.Duration, c.MaxConnections)
	}
	if a, b := c.Services[0].MaxParked, c.Services[1].MaxParked; a != 7 || b != 50 {
		t.Errorf("max_parked = %d, %d; want 7 (own), 50 (inherited)", a, b)
	}

	d, err := Parse(strings.NewReader("[[services]]\nhost = \"a.test\"\ntype = \"sts\"\nnamespace = \"n\"\nname = \"a\"\nservice_name = \"a\"\nservice_port = 80\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.MaxHeaderSize.Bytes != DefaultMaxHeaderSize || d.MaxRequestBody.Bytes != 0 || d.MaxConnections != DefaultMaxConnections || d.Services[0].MaxParked != DefaultMaxParked || d.ClientHeaderTimeout.Duration != DefaultClientHeaderTimeout {
		t.Errorf("defaults = %+v; want documented defaults", d)
	}

	for _, tc := range []struct{ line, want string }{
		{`max_header_size = "12 parsecs"`, `1: max_header_size: invalid size "12 parsecs"`},
		{`max_header_size = 10`, `max_header_size: must be between 1KiB and 1MiB`},
		{`max_request_body = -1`, `1: max_request_body: size -1 is negative`},
		{`max_connections = 0`, `max_connections: must be at least 1`},
		{`max_parked = -3`, `max_parked: must be at least 1`},
	} {
		c, err := Parse(strings.NewReader(tc.line + "\n[[services]]\nhost = \"a.test\"\ntype = \"sts\"\nnamespace = \"n\"\nname = \"a\"\nservice_name = \"a\"\nservice_port = 80\n"))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want it to contain %q", tc.line, err, tc.want)
		}
	}
}

// TestTLSKeyErrors covers the keys of issue 11: tls_secrets, tls_secret,
// tls_cert_file/tls_key_file, https_redirect, protocol, tls_passthrough.
func TestTLSKeyErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []wantErr
	}{
		{"tls_secrets entry without namespace", "tls_secrets = [\"ns/ok\", \"wild\"]\n" + base,
			[]wantErr{{1, "tls_secrets[1]", `invalid entry "wild": want "NAMESPACE/NAME"`}}},
		{"tls_secrets entry with two slashes", "tls_secrets = [\"a/b/c\"]\n" + base,
			[]wantErr{{1, "tls_secrets[0]", `invalid entry "a/b/c"`}}},
		{"tls_secrets bad namespace", "tls_secrets = [\"Certs/wild\"]\n" + base,
			[]wantErr{{1, "tls_secrets[0]", `invalid namespace "Certs"`}}},
		{"tls_secrets bad name", "tls_secrets = [\"certs/wild_card\"]\n" + base,
			[]wantErr{{1, "tls_secrets[0]", `invalid Secret name "wild_card"`}}},
		{"tls_secrets duplicate", "tls_secrets = [\"certs/w\", \"certs/w\"]\n" + base,
			[]wantErr{{1, "tls_secrets[1]", "duplicate entry \"certs/w\" (same as tls_secrets[0])"}}},
		{"tls_secrets not a list", "tls_secrets = \"certs/w\"\n" + base,
			[]wantErr{{1, "tls_secrets", `want a list of strings, not the string "certs/w"`}}},
		{"tls_secret invalid", base + "tls_secret = \"A_B\"\n",
			[]wantErr{{9, "services[0].tls_secret", `invalid Secret name "A_B"`}}},
		{"tls_secret empty", base + "tls_secret = \"\"\n",
			[]wantErr{{9, "services[0].tls_secret", "empty"}}},
		{"tls_cert_file without tls_key_file", base + "tls_cert_file = \"/c.pem\"\n",
			[]wantErr{{9, "services[0].tls_cert_file", "tls_cert_file is set but tls_key_file is not: give both or neither"}}},
		{"tls_key_file without tls_cert_file", base + second + "tls_key_file = \"/k.pem\"\n",
			[]wantErr{{16, "services[1].tls_key_file", "tls_key_file is set but tls_cert_file is not"}}},
		{"tls_cert_file empty", base + "tls_cert_file = \"\"\ntls_key_file = \"/k.pem\"\n",
			[]wantErr{{9, "services[0].tls_cert_file", "empty path"}, {10, "services[0].tls_key_file", "tls_key_file is set but tls_cert_file is not"}}},
		{"unknown protocol", base + "protocol = \"h2\"\n",
			[]wantErr{{9, "services[0].protocol", `unknown protocol "h2" (want "auto", "http1" or "h2c")`}}},
		{"protocol not a string", base + "protocol = 2\n",
			[]wantErr{{9, "services[0].protocol", "want a string, not the integer 2"}}},
		{"https_redirect not a bool", base + "https_redirect = \"yes\"\n",
			[]wantErr{{9, "services[0].https_redirect", `want true or false, not the string "yes"`}}},
		{"https_redirect without any certificate", base + "https_redirect = true\n",
			[]wantErr{{9, "services[0].https_redirect", "no certificate is configured"}}},
		{"passthrough with tls_secret", base + "tls_passthrough = true\ntls_secret = \"a-tls\"\n",
			[]wantErr{{10, "services[0].tls_secret", "not allowed with tls_passthrough = true: a tls_passthrough service's TLS is terminated by the app"}}},
		{"passthrough with files", base + "tls_passthrough = true\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\n",
			[]wantErr{{10, "services[0].tls_cert_file", "presents no certificate"}, {11, "services[0].tls_key_file", "presents no certificate"}}},
		{"passthrough with https_redirect", "tls_secrets = [\"certs/w\"]\n" + base + "tls_passthrough = true\nhttps_redirect = true\n",
			[]wantErr{{11, "services[0].https_redirect", "not allowed with tls_passthrough = true"}}},
		{"passthrough with waiting_page", base + "tls_passthrough = true\nwaiting_page = true\n",
			[]wantErr{{10, "services[0].waiting_page", "never sees the requests inside the connection"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.src)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want errors %v", c, tt.want)
			}
			checkErrors(t, path, err, tt.want)
		})
	}
}

// TestTLSKeysValid checks valid TLS and protocol settings and their
// defaults.
func TestTLSKeysValid(t *testing.T) {
	tests := []struct {
		name, top, svc string
		wantProtocol   string
		wantCerts      bool
	}{
		{"nothing set", "", "", ProtocolAuto, false},
		{"protocol h2c", "", "protocol = \"h2c\"\n", ProtocolH2C, false},
		{"protocol case-insensitive", "", "protocol = \"HTTP1\"\n", ProtocolHTTP1, false},
		{"tls_secret", "", "tls_secret = \"a-tls\"\n", ProtocolAuto, true},
		{"files", "", "tls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n", ProtocolAuto, true},
		{"redirect with a shared certificate", "tls_secrets = [\"certs/wild\"]\n", "https_redirect = true\n", ProtocolAuto, true},
		{"redirect with own secret", "", "https_redirect = true\ntls_secret = \"a-tls\"\n", ProtocolAuto, true},
		{"passthrough alone", "", "tls_passthrough = true\n", ProtocolAuto, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.top+base+tt.svc))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := c.Services[0].Protocol; got != tt.wantProtocol {
				t.Errorf("Protocol = %q; want %q", got, tt.wantProtocol)
			}
			if got := c.HasCertificates(); got != tt.wantCerts {
				t.Errorf("HasCertificates() = %v; want %v", got, tt.wantCerts)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("second Validate: %v", err)
			}
		})
	}
}

// TestCheckCertFiles loads file pairs as --check does.
func TestCheckCertFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert1, key1 := selfSigned(t, "a.example.com")
	_, key2 := selfSigned(t, "b.example.com")
	c1, k1, k2 := write("c1.pem", cert1), write("k1.pem", key1), write("k2.pem", key2)
	garbage := write("garbage.pem", []byte("not PEM\n"))
	tests := []struct {
		name       string
		cert, key  string
		wantSubstr string // "" for no error
	}{
		{"matching pair", c1, k1, ""},
		{"key of another certificate", c1, k2, "private key does not match public key"},
		{"missing certificate", filepath.Join(dir, "nope.pem"), k1, "no such file"},
		{"not PEM", garbage, k1, "failed to find any PEM data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, base+fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q\n", tt.cert, tt.key))
			c, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			err = c.CheckCertFiles()
			if tt.wantSubstr == "" {
				if err != nil {
					t.Fatalf("CheckCertFiles() = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckCertFiles() = nil; want an error containing %q", tt.wantSubstr)
			}
			checkErrors(t, path, err, []wantErr{{9, "services[0].tls_cert_file", tt.wantSubstr}})
			if !strings.Contains(err.Error(), tt.cert) {
				t.Errorf("error %q does not name the file %s", err, tt.cert)
			}
		})
	}
}

// selfSigned returns a PEM certificate for name and its PEM key.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// onHost is second on base's host, on lines 9 (header) to 15 after base.
var onHost = replaceLine(second, 2, `host = "a.example.com"`)

// TestPaths checks valid paths: the default, normalisation, and entries
// sharing a host with different paths (issue 12).
func TestPaths(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want [][]string // Paths of each entry
	}{
		{"default", base, [][]string{{"/"}}},
		{"trailing slash removed", base + `paths = ["/api/", "/v2"]` + "\n", [][]string{{"/api", "/v2"}}},
		{"root kept", base + `paths = ["/"]` + "\n", [][]string{{"/"}}},
		{"two entries, one host", base + `paths = ["/api"]` + "\n" + onHost, [][]string{{"/api"}, {"/"}}},
		{"nested prefixes on one host", base + `paths = ["/api"]` + "\n" + onHost + `paths = ["/api/v2", "/web"]` + "\n", [][]string{{"/api"}, {"/api/v2", "/web"}}},
		{"same path, other hosts", base + `paths = ["/api"]` + "\n" + second + `paths = ["/api"]` + "\n", [][]string{{"/api"}, {"/api"}}},
		{"wildcard and exact host share a path", replaceLine(base, 3, `host = "*.example.com"`) + onHost, [][]string{{"/"}, {"/"}}},
		{"pchar and percent-encoding", base + `paths = ["/a:b@c;d=e/~x-y_z.w", "/%7Euser"]` + "\n", [][]string{{"/a:b@c;d=e/~x-y_z.w", "/%7Euser"}}},
		{"probe under the entry's longest prefix", base + `paths = ["/api"]` + "\n" + `probe_paths = ["/api/healthz"]` + "\n" + onHost + `probe_paths = ["/healthz"]` + "\n", [][]string{{"/api"}, {"/"}}},
		{"multi-line list", base + "paths = [\n  \"/a\",\n  \"/b/\",\n]\n", [][]string{{"/a", "/b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.src))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var got [][]string
			for _, s := range c.Services {
				got = append(got, s.Paths)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("paths = %q; want %q", got, tt.want)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("second Validate: %v", err)
			}
		})
	}
}

// TestPathErrors checks bad paths and overlapping (host, path) pairs,
// which name both entries' lines.
func TestPathErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []wantErr
		also string // in the error's text: the other entry, as file:line key
	}{
		{"no leading slash", base + `paths = ["api"]` + "\n",
			[]wantErr{{9, "services[0].paths", `invalid path "api": must start with /`}}, ""},
		{"query", base + `paths = ["/api?x=1"]` + "\n",
			[]wantErr{{9, "services[0].paths", "no query or fragment"}}, ""},
		{"space", base + `paths = ["/a b"]` + "\n",
			[]wantErr{{9, "services[0].paths", `' ' is not allowed`}}, ""},
		{"bad percent", base + `paths = ["/a%2"]` + "\n",
			[]wantErr{{9, "services[0].paths", "percent-encoded"}}, ""},
		{"dot-dot segment", base + `paths = ["/a/../b"]` + "\n",
			[]wantErr{{9, "services[0].paths", `".." segments`}}, ""},
		{"empty segment", base + `paths = ["/a//b"]` + "\n",
			[]wantErr{{9, "services[0].paths", "empty segment"}}, ""},
		{"empty list", base + "paths = []\n",
			[]wantErr{{9, "services[0].paths", "empty: list at least one path prefix"}}, ""},
		{"not a list", base + `paths = "/api"` + "\n",
			[]wantErr{{9, "services[0].paths", `want a list of strings, not the string "/api"`}}, ""},
		{"repeated in one entry", base + `paths = ["/api", "/api/"]` + "\n",
			[]wantErr{{9, "services[0].paths", `path "/api/" repeats "/api"`}}, ""},
		{"overlap across entries", base + `paths = ["/api", "/web"]` + "\n" + onHost + `paths = ["/web/"]` + "\n",
			[]wantErr{{17, "services[1].paths", `path "/web" of host "a.example.com" is already served by `}}, ":9 services[0].paths"},
		{"overlap on the default path", base + onHost,
			[]wantErr{{10, "services[1].host", `path "/" of host "a.example.com" is already served by `}}, `:3 services[0].host (paths default to ["/"]) (this entry's paths default to ["/"])`},
		{"overlap after host normalisation", base + `paths = ["/x"]` + "\n" + replaceLine(second, 2, `host = "A.example.com.:80"`) + `paths = ["/x"]` + "\n",
			[]wantErr{{17, "services[1].paths", `path "/x" of host "a.example.com"`}}, ":9 services[0].paths"},
		{"passthrough shares its host", base + "tls_passthrough = true\n" + onHost + `paths = ["/api"]` + "\n",
			[]wantErr{{9, "services[0].tls_passthrough", `host "a.example.com" is also served by `}}, ":11 services[1].host"},
		{"passthrough with paths", base + "tls_passthrough = true\n" + `paths = ["/api"]` + "\n",
			[]wantErr{{10, "services[0].paths", "not allowed with tls_passthrough = true"}}, ""},
		{"probe path outside the entry's paths", base + `paths = ["/api"]` + "\n" + `probe_paths = ["/healthz"]` + "\n",
			[]wantErr{{10, "services[0].probe_paths", `probe path "/healthz" is under none of this host's paths`}}, ""},
		{"probe path routed to another entry", base + `probe_paths = ["/api/healthz"]` + "\n" + onHost + `paths = ["/api"]` + "\n",
			[]wantErr{{9, "services[0].probe_paths", `probe path "/api/healthz" is routed to `}}, ":17 services[1].paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.src)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want errors %v", c, tt.want)
			}
			checkErrors(t, path, err, tt.want)
			if tt.also != "" && !strings.Contains(err.Error(), path+tt.also) {
				t.Errorf("error %q does not name the other entry as %q", err, path+tt.also)
			}
		})
	}
}

// TestOperatorKeys covers issue 14's keys: request_id and
// cold_start_header, their defaults and their errors.
func TestOperatorKeys(t *testing.T) {
	errTests := []struct {
		name string
		src  string
		want []wantErr
	}{
		{"request_id unknown", "request_id = \"keep\"\n" + base,
			[]wantErr{{1, "request_id", `unknown request_id "keep" (want "trust" or "replace")`}}},
		{"request_id not a string", "request_id = true\n" + base,
			[]wantErr{{1, "request_id", "want a string"}}},
		{"cold_start_header not a bool", base + "cold_start_header = \"no\"\n",
			[]wantErr{{9, "services[0].cold_start_header", `want true or false, not the string "no"`}}},
		{"cold_start_header on passthrough", base + "tls_passthrough = true\ncold_start_header = true\n",
			[]wantErr{{10, "services[0].cold_start_header", "not allowed with tls_passthrough = true"}}},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.src)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want errors %v", c, tt.want)
			}
			checkErrors(t, path, err, tt.want)
		})
	}
	okTests := []struct {
		name, top, svc string
		wantID         string
		wantHeader     bool
	}{
		{"defaults", "", "", RequestIDTrust, true},
		{"replace", "request_id = \"replace\"\n", "", RequestIDReplace, true},
		{"trust", "request_id = \"trust\"\n", "", RequestIDTrust, true},
		{"header off", "", "cold_start_header = false\n", RequestIDTrust, false},
		{"header on", "", "cold_start_header = true\n", RequestIDTrust, true},
		{"passthrough header off", "", "tls_passthrough = true\ncold_start_header = false\n", RequestIDTrust, false},
	}
	for _, tt := range okTests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.top+base+tt.svc))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.RequestID != tt.wantID {
				t.Errorf("RequestID = %q; want %q", c.RequestID, tt.wantID)
			}
			if got := c.Services[0].WantsColdStartHeader(); got != tt.wantHeader {
				t.Errorf("WantsColdStartHeader() = %v; want %v", got, tt.wantHeader)
			}
		})
	}
}

// TestIngressClass: with ingress_class set a config needs no [[services]];
// a bad class name is an error at its key; WithServices merges the
// cluster's entries (a catch-all among them) and CheckService validates
// one entry against the file's top-level settings.
func TestIngressClass(t *testing.T) {
	c, err := Load(writeConfig(t, "timeout = \"7s\"\ningress_class = \"agimo\"\n"))
	if err != nil {
		t.Fatalf("Load = %v; want no error", err)
	}
	if c.IngressClass != "agimo" || len(c.Services) != 0 {
		t.Fatalf("got class %q, %d services; want \"agimo\", 0", c.IngressClass, len(c.Services))
	}
	_, err = Load(writeConfig(t, "ingress_class = \"Not_A_Name\"\n"))
	if err == nil || !strings.Contains(err.Error(), ":1: ingress_class: invalid IngressClass name") {
		t.Errorf("Load(bad class) = %v; want an error at line 1, ingress_class", err)
	}
	_, err = Load(writeConfig(t, "timeout = \"7s\"\n"))
	if err == nil || !strings.Contains(err.Error(), "at least one [[services]]") {
		t.Errorf("Load(no services, no class) = %v; want the missing-services error", err)
	}

	extra := []Service{
		{Host: "*", Type: "deployment", Namespace: "apps", Name: "d", ServiceName: "d", ServicePort: 80},
		{Host: "A.example", Type: "deployment", Namespace: "apps", Name: "a", ServiceName: "a", ServicePort: 80, Paths: []string{"/api/"}},
	}
	m, err := c.WithServices(extra)
	if err != nil {
		t.Fatalf("WithServices = %v; want no error", err)
	}
	if len(m.Services) != 2 || m.Services[0].Host != "*" || m.Services[1].Host != "a.example" ||
		m.Services[1].Paths[0] != "/api" || m.Services[1].Timeout.Duration != 7*time.Second {
		t.Errorf("merged services = %+v; want *, a.example /api with timeout 7s", m.Services)
	}
	if extra[1].Host != "A.example" || len(c.Services) != 0 {
		t.Errorf("WithServices changed its inputs: extra %q, file services %d", extra[1].Host, len(c.Services))
	}
	if _, err := c.WithServices([]Service{extra[1], extra[1]}); err == nil {
		t.Error("WithServices(same host and path twice) = nil; want an error")
	}
	// Exact paths (an Ingress's pathType Exact): no default "/", their
	// own claims, checked as paths are.
	exact := extra[1]
	exact.Paths, exact.ExactPaths = nil, []string{"/api"}
	m, err = c.WithServices([]Service{extra[1], exact})
	if err != nil || m.Services[1].Paths != nil {
		t.Errorf("WithServices(prefix and exact /api) = %v, paths %q; want no error, no default path", err, m.Services[1].Paths)
	}
	if _, err := c.WithServices([]Service{exact, exact}); err == nil {
		t.Error("WithServices(same exact path twice) = nil; want an error")
	}
	exact.ExactPaths = []string{"api"}
	if _, err := c.WithServices([]Service{exact}); err == nil || !strings.Contains(err.Error(), `invalid exact path "api"`) {
		t.Errorf("WithServices(exact path without /) = %v; want invalid exact path", err)
	}

	// The catch-all host is a TOML host too.
	ca, err := Load(writeConfig(t, "[[services]]\nhost = \"*\"\ntype = \"deploy\"\nnamespace = \"a\"\nname = \"d\"\nservice_name = \"d\"\nservice_port = 80\n"))
	if err != nil || ca.Services[0].Host != CatchAllHost {
		t.Errorf("Load(host = \"*\") = %v; want the catch-all host", err)
	}

	s, err := c.CheckService(extra[1])
	if err != nil || s.MinReplicas != 1 || s.Timeout.Duration != 7*time.Second {
		t.Errorf("CheckService = %+v, %v; want defaults applied, timeout 7s", s, err)
	}
	bad := extra[1]
	bad.IdleAfter = Duration{Duration: -time.Second, Set: true}
	if _, err := c.CheckService(bad); err == nil || !strings.Contains(err.Error(), "idle_after: must be positive") {
		t.Errorf("CheckService(idle_after -1s) = %v; want idle_after: must be positive", err)
	}
}
