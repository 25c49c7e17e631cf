package main

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// h2specKnown lists the h2spec cases that fail against Agimo, on which
// listener, and why; README's "HTTP/2 conformance" says the same.
// TestH2spec fails on any other failed case, and on a listed case that
// passes (so the list shrinks as x/net/http2 changes).
var h2specKnown = []struct {
	id      string
	h2cOnly bool
	why     string
}{
	{"http2/3.5/2", true, "the plain port serves HTTP/1.1 too: bytes that are not the preface are an " +
		"HTTP/1.1 request, answered 400 and closed (h2spec wants a bare close)"},
	{"http2/6.5.3/1", false, "x/net/http2 ends a connection whose SETTINGS frame repeats a parameter " +
		"(PROTOCOL_ERROR, server.go: settings_big_or_dups); the RFC lets a parameter repeat"},
	{"http2/8.1.2.2/1", false, "x/net/http2 answers a request with a connection-specific field 400 " +
		"instead of resetting the stream (checkValidHTTP2RequestHeaders); RFC 9113 §8.1.1 allows a response"},
	{"http2/8.1.2.2/2", false, "likewise for TE other than \"trailers\""},
}

// TestH2spec runs the HTTP/2 conformance suite h2spec
// (github.com/summerwind/h2spec, hack/tools.sh installs it) against both
// of Agimo's HTTP/2 listeners: h2c with prior knowledge on the plain port
// and h2 over TLS (ALPN) on the TLS port, with a certificate from files.
//
// h2spec sends every request with :authority HOST:PORT (its -h and -p)
// and path /, so the service answering is the one whose host is HOST (a
// host key ignores the port, conf.AppendHost), ready: 127.0.0.1 with an
// HTTP/1.1 upstream, and localhost with an h2c one (protocol = "h2c"),
// for the HTTP/2-to-HTTP/2 path. Each stream goes the whole way, as a
// client's would.
func TestH2spec(t *testing.T) {
	bin := h2specBinary(t)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello from the app\n")
	})
	up := httptest.NewServer(app)
	defer up.Close()
	upH2C := httptest.NewServer(h2c.NewHandler(app, &http2.Server{}))
	defer upH2C.Close()
	cert := newTestCert(t, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	kubeconfig := fakeAPIServer(t, append(readyService("default", "app", 80, up.Listener.Addr().String()),
		readyService("default", "grpc", 80, upH2C.Listener.Addr().String())...)...)
	a := startAgimo(t, `
[[services]]
host = "127.0.0.1"
type = "deployment"
namespace = "default"
name = "app"
service_name = "app"
service_port = 80
tls_cert_file = "`+cert.certFile+`"
tls_key_file = "`+cert.keyFile+`"

[[services]]
host = "localhost"
type = "deployment"
namespace = "default"
name = "grpc"
service_name = "grpc"
service_port = 80
protocol = "h2c"
`, kubeconfig)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"h2c", []string{"-h", "127.0.0.1", "-p", a.port}},
		{"h2", []string{"-h", "127.0.0.1", "-p", a.tlsPort, "-t", "-k"}},
		{"h2c-to-h2c-upstream", []string{"-h", "localhost", "-p", a.port}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failed, passed := runH2spec(t, bin, tc.args)
			if passed < 100 {
				t.Errorf("h2spec passed %d cases; want the whole suite (over 140)", passed)
			}
			var known []string
			for _, k := range h2specKnown {
				if !k.h2cOnly || !slices.Contains(tc.args, "-t") {
					known = append(known, k.id)
				}
			}
			var unexpected []string
			for _, c := range failed {
				if !slices.Contains(known, c.id) {
					unexpected = append(unexpected, c.id+" "+c.name+":\n\t"+strings.ReplaceAll(c.failure, "\n", "\n\t"))
				}
			}
			if len(unexpected) > 0 {
				t.Errorf("h2spec %s: %d cases failed; want none:\n%s", tc.name, len(unexpected), strings.Join(unexpected, "\n"))
			}
			for _, id := range known {
				if !slices.ContainsFunc(failed, func(c h2specCase) bool { return c.id == id }) {
					t.Errorf("h2spec %s: case %s passed; want it to fail as h2specKnown says (remove it there and from README)", tc.name, id)
				}
			}
			t.Logf("h2spec %s: %d passed, %d failed as README explains", tc.name, passed, len(failed))
		})
	}
	// h2spec's hundreds of connections, many ended by a protocol error,
	// leave nothing counted behind.
	for _, series := range []string{"agimo_open_connections",
		`agimo_active_requests{host="127.0.0.1"}`, `agimo_active_requests{host="localhost"}`} {
		a.waitFor(t, series+" back to 0", a.metricIs(series, 0))
	}
	// x/net/http2's line per connection error goes to Agimo's log at
	// debug, not to the standard logger.
	if !regexp.MustCompile(`\{"level":"debug".*http2: server connection error`).MatchString(a.logs.String()) {
		t.Errorf("no debug line of x/net/http2's about a connection error in Agimo's log")
	}
}

// h2specBinary finds h2spec on PATH or in Go's bin directory, or fails.
func h2specBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	gobin, _ := exec.Command("go", "env", "GOBIN").Output()
	dir := strings.TrimSpace(string(gobin))
	if dir == "" {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		dir = filepath.Join(strings.TrimSpace(string(gopath)), "bin")
	}
	p := filepath.Join(dir, "h2spec")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("h2spec not found on PATH nor in %s: run `make tools` (hack/tools.sh installs it)", dir)
	}
	return p
}

type h2specCase struct{ id, name, failure string }

// runH2spec runs h2spec with args and all its cases (--strict), and
// returns the failed ones, by the JUnit report it writes, and the number
// passed.
func runH2spec(t *testing.T, bin string, args []string) (failed []h2specCase, passed int) {
	t.Helper()
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--strict", "-o", "5", "-j", report}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) || ctx.Err() != nil {
		t.Fatalf("h2spec %v: %v\n%s", args, err, out)
	}
	b, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("h2spec %v wrote no report (%v):\n%s", args, rerr, out)
	}
	var suites struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Name    string `xml:"name,attr"`
			Cases   []struct {
				Name    string `xml:"classname,attr"`
				Failure *struct {
					Text string `xml:",chardata"`
				} `xml:"failure"`
				Error *struct {
					Text string `xml:",chardata"`
				} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("h2spec report: %v\n%s", err, b)
	}
	for _, s := range suites.Suites {
		for i, c := range s.Cases {
			// h2spec's own name of a case: section and number, as its
			// command line selects one ("http2/6.5.3/1").
			id := s.Package + "/" + strconv.Itoa(i+1)
			switch {
			case c.Failure != nil:
				failed = append(failed, h2specCase{id, s.Name + ": " + c.Name, strings.TrimSpace(c.Failure.Text)})
			case c.Error != nil:
				failed = append(failed, h2specCase{id, s.Name + ": " + c.Name, strings.TrimSpace(c.Error.Text)})
			case c.Skipped == nil:
				passed++
			}
		}
	}
	if err != nil && len(failed) == 0 {
		t.Fatalf("h2spec %v: %v with no failed case in its report:\n%s", args, err, out)
	}
	return failed, passed
}
