package h2_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const oneService = `
timeout = "10s"
[[services]]
host = "app.test"
type = "deployment"
namespace = "apps"
name = "app"
service_name = "app"
service_port = 80
`

// h1Upstream is an HTTP/1.1 app: it answers a chunked body with a
// trailer, and remembers the last request's header and body.
type h1Upstream struct {
	*httptest.Server
	hits atomic.Int32
	got  atomic.Pointer[http.Request]
	body atomic.Pointer[string]
	// byPath holds the body of the last request to each path: a request
	// cut short upstream may be recorded after a later one.
	byPath sync.Map
}

func newH1Upstream(t *testing.T) *h1Upstream {
	u := &h1Upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		s := string(b)
		u.body.Store(&s)
		u.byPath.Store(r.URL.Path, s)
		u.got.Store(r)
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("X-App", "h1")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "hello ")
		w.(http.Flusher).Flush() // no Content-Length: chunked, trailer after
		io.WriteString(w, "from h1 "+r.Proto)
		w.Header().Set("X-Checksum", "abc123")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *h1Upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

// A stream to a cold service parks, is released when its endpoint turns
// ready, and gets the HTTP/1.1 upstream's status, fields, body and
// trailers (a chunked trailer section becomes HTTP/2 trailers); the
// upstream sees the forwarding fields.
func TestH2CStreamParkedThenForwardedToH1(t *testing.T) {
	h := startHarness(t, oneService)
	up := newH1Upstream(t)
	c := h2cClient(t, h.addr)

	req, err := http.NewRequest(http.MethodPost, "http://app.test/x?q=1", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "6.6.6.6")        // not trusted: replaced
	req.Header["X_Forwarded_For"] = []string{"6.6.6.6"} // read as the same by CGI: dropped
	done := send(c, req)
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("upstream hits while parked = %d; want 0", n)
	}
	h.setEndpoints("apps", "app", "", true, up.addr())
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.ProtoMajor != 2 {
		t.Errorf("client protocol = %s; want HTTP/2.0", r.resp.Proto)
	}
	if r.resp.StatusCode != http.StatusCreated || r.body != "hello from h1 HTTP/1.1" {
		t.Errorf("got %d %q; want 201 %q", r.resp.StatusCode, r.body, "hello from h1 HTTP/1.1")
	}
	if got := r.resp.Header.Get("X-App"); got != "h1" {
		t.Errorf("X-App = %q; want h1", got)
	}
	if got := r.resp.Trailer.Get("X-Checksum"); got != "abc123" {
		t.Errorf("trailer X-Checksum = %q; want abc123 (trailer %v)", got, r.resp.Trailer)
	}
	in := up.got.Load()
	for k, want := range map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "app.test",
	} {
		if got := in.Header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q; want [%q]", k, got, want)
		}
	}
	if v := in.Header.Values("X_forwarded_for"); len(v) != 0 {
		t.Errorf("upstream got X_Forwarded_For %q; want it dropped", v)
	}
	if in.Host != "app.test" || in.URL.RequestURI() != "/x?q=1" || in.Method != http.MethodPost {
		t.Errorf("upstream got %s %s Host %s; want POST /x?q=1 Host app.test", in.Method, in.URL.RequestURI(), in.Host)
	}
	if b := *up.body.Load(); b != "ping" {
		t.Errorf("upstream body = %q; want ping", b)
	}
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 1 {
		t.Errorf("requests_total = %v; want 1", got)
	}
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 0)
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	if got := h.metric(`agimo_park_duration_seconds_count{host="app.test"}`); got != 1 {
		t.Errorf("park duration count = %v; want 1", got)
	}

	// Warm now: a second stream on the same connection goes straight on.
	r = get(t, c, "http://app.test/y")
	if r.resp.StatusCode != http.StatusCreated || r.resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Errorf("warm: got %d trailer %v; want 201 with X-Checksum", r.resp.StatusCode, r.resp.Trailer)
	}
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 2 {
		t.Errorf("requests_total = %v; want 2 (one per stream)", got)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	waitNoHandlers(t)
}

// curl with prior knowledge of HTTP/2 (a real client, nghttp2 inside)
// reaches a cold service, then a warm one.
func TestCurlHTTP2PriorKnowledge(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	h := startHarness(t, oneService)
	up := newH1Upstream(t)
	_, port, _ := net.SplitHostPort(h.addr)
	curl := func() <-chan string {
		out := make(chan string, 1)
		go func() {
			cmd := exec.Command("curl", "-sS", "-i", "--http2-prior-knowledge", "--max-time", "20",
				"--resolve", "app.test:"+port+":127.0.0.1",
				"-w", "\ncurl: %{http_code} HTTP/%{http_version}\n", "http://app.test:"+port+"/c")
			b, err := cmd.CombinedOutput()
			if err != nil {
				out <- fmt.Sprintf("curl failed: %v\n%s", err, b)
				return
			}
			out <- string(b)
		}()
		return out
	}
	check := func(what, out string) {
		t.Helper()
		for _, want := range []string{"HTTP/2 201", "x-app: h1", "hello from h1 HTTP/1.1", "x-checksum: abc123", "curl: 201 HTTP/2"} {
			if !strings.Contains(strings.ReplaceAll(out, "\r", ""), want) {
				t.Errorf("%s: curl output lacks %q:\n%s", what, want, out)
			}
		}
	}
	out := curl()
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 1)
	h.setEndpoints("apps", "app", "", true, up.addr())
	check("cold", <-out)
	check("warm", <-curl())
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 2 {
		t.Errorf("requests_total = %v; want 2", got)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
	if in := up.got.Load(); in.Header.Get("X-Forwarded-Host") != "app.test:"+port {
		t.Errorf("X-Forwarded-Host = %q; want %q", in.Header.Get("X-Forwarded-Host"), "app.test:"+port)
	}
}

// newH1UpstreamFunc is an HTTP/1.1 app answering with f.
func newH1UpstreamFunc(t *testing.T, f http.HandlerFunc) *h1Upstream {
	u := &h1Upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		f(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// Expect: 100-continue from an HTTP/2 client (curl sends it for a large
// upload): the client gets 100 Continue, sends its body, and the
// HTTP/1.1 upstream's answer comes back with the body received whole.
func TestExpectContinueToH1(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	h := startHarness(t, oneService)
	up := newH1Upstream(t)
	h.setEndpoints("apps", "app", "", true, up.addr())
	h.waitReady("app.test")
	_, port, _ := net.SplitHostPort(h.addr)
	body := strings.Repeat("z", 100000)
	cmd := exec.Command("curl", "-sS", "-i", "--http2-prior-knowledge", "--max-time", "20", "--expect100-timeout", "15",
		"-H", "Expect: 100-continue", "--data-binary", "@-",
		"--resolve", "app.test:"+port+":127.0.0.1", "http://app.test:"+port+"/up")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	got := strings.ReplaceAll(string(out), "\r", "")
	if !strings.Contains(got, "HTTP/2 100") || !strings.Contains(got, "HTTP/2 201") {
		t.Errorf("curl output lacks 100 then 201:\n%s", got)
	}
	if b := up.body.Load(); b == nil || *b != body {
		t.Errorf("upstream body: got %d bytes; want %d", len(*b), len(body))
	}
	if in := up.got.Load(); in.Header.Get("Expect") != "" {
		t.Logf("upstream got Expect %q", in.Header.Get("Expect"))
	}
}
