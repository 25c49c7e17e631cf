package proxy_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/agimo/agimo/route"
)

// h2cUpstream is an app that speaks HTTP/2 without TLS only (x/net's h2c
// handler; an HTTP/1.1 request gets nothing useful from it). It records
// each request's protocol, method, target and body.
type h2cUpstream struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func newH2CUpstream(t *testing.T) *h2cUpstream {
	u := &h2cUpstream{}
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		u.record(r)
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("X-App", "h2c")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush() // length unknown from here
		io.WriteString(w, "part two")
		w.Header().Set("X-Checksum", "abc123")
		w.Header().Set(http.TrailerPrefix+"X-Late", "undeclared") // announced by nobody
	})
	mux.HandleFunc("/fixed", func(w http.ResponseWriter, r *http.Request) {
		u.record(r)
		io.WriteString(w, "fixed") // all of it before the handler returns: Content-Length
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h2c.NewHandler(mux, &http2.Server{})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("h2c upstream: %v", err)
		}
	})
	u.addr = ln.Addr().String()
	return u
}

func (u *h2cUpstream) record(r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.got = append(u.got, r.Proto+" "+r.Method+" "+r.Host+" "+r.RequestURI+" "+string(b)+" xff="+r.Header.Get("X-Forwarded-For"))
}

func (u *h2cUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

// An HTTP/1.1 client reaches an upstream whose EndpointSlice port has
// appProtocol kubernetes.io/h2c, through the fasthttp front end: parked
// while cold (a bodiless GET in the lot, a POST on its goroutine), then
// sent upstream as an HTTP/2 stream, its body with it; the response comes
// back chunked with the upstream's trailers (or with a Content-Length
// when the upstream sent one).
func TestHTTP1ClientToH2CUpstream(t *testing.T) {
	post := strings.NewReplacer(`"app.test"`, `"post.test"`, `"app"`, `"post"`).Replace(oneService[strings.Index(oneService, "[[services]]"):])
	cfg := oneService + post
	h := startHarness(t, cfg)
	h.appProtocol = route.AppProtocolH2C
	up := newH2CUpstream(t)
	for _, tc := range []struct {
		host, method, body, want string
	}{
		{"app.test", http.MethodGet, "", "HTTP/2.0 GET app.test /stream?x=1  xff=127.0.0.1"},
		{"post.test", http.MethodPost, "hello upstream", "HTTP/2.0 POST post.test /stream?x=1 hello upstream xff=127.0.0.1"},
	} {
		req, err := http.NewRequest(tc.method, "http://"+h.addr+"/stream?x=1", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.body == "" {
			req.Body = nil
		}
		req.Host = tc.host
		type result struct {
			resp *http.Response
			body string
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, body, err := do(req)
			done <- result{resp, body, err}
		}()
		parked := `agimo_parked_requests{host="` + tc.host + `"}`
		h.waitMetric(parked, 1)
		h.setEndpoints("apps", strings.TrimSuffix(tc.host, ".test"), true, up.addr)
		r := <-done
		if r.err != nil {
			t.Fatalf("%s: %v", tc.method, r.err)
		}
		if r.resp.StatusCode != http.StatusCreated || r.body != "part one, part two" {
			t.Errorf("%s: got %d %q; want 201 %q", tc.method, r.resp.StatusCode, r.body, "part one, part two")
		}
		if te := r.resp.TransferEncoding; len(te) != 1 || te[0] != "chunked" {
			t.Errorf("%s: Transfer-Encoding = %v; want chunked", tc.method, te)
		}
		if got := r.resp.Header.Get("X-App"); got != "h2c" {
			t.Errorf("%s: X-App = %q; want h2c", tc.method, got)
		}
		for k, want := range map[string]string{"X-Checksum": "abc123", "X-Late": "undeclared"} {
			if got := r.resp.Trailer.Get(k); got != want {
				t.Errorf("%s: trailer %s = %q; want %q (trailer %v)", tc.method, k, got, want, r.resp.Trailer)
			}
		}
		if got := up.requests(); len(got) == 0 || got[len(got)-1] != tc.want {
			t.Errorf("%s: upstream got %q; want last %q", tc.method, got, tc.want)
		}
		h.waitMetric(parked, 0)
		h.waitMetric(`agimo_active_requests{host="`+tc.host+`"}`, 0)
	}

	// Warm, a response of known length keeps it.
	resp, body, err := h.get("app.test", "/fixed")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || body != "fixed" || resp.ContentLength != 5 {
		t.Errorf("got %d %q length %d; want 200 %q length 5", resp.StatusCode, body, resp.ContentLength, "fixed")
	}
	if got := h.metric(`agimo_requests_total{host="app.test"}`); got != 2 {
		t.Errorf("requests_total = %v; want 2", got)
	}
	h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
}

// A chunked request's trailer section from an HTTP/1.1 client reaches an
// h2c upstream as the stream's trailers.
func TestHTTP1RequestTrailersToH2CUpstream(t *testing.T) {
	h := startHarness(t, oneService)
	h.appProtocol = route.AppProtocolH2C
	got := make(chan string, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Proto + " " + string(b) + " trailer X-Sum=" + r.Trailer.Get("X-Sum")
	}), &http2.Server{})}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-served })
	h.setEndpoints("apps", "app", true, ln.Addr().String())
	out, _ := h.rawExchange("POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nConnection: close\r\n\r\n"+
		"4\r\nbody\r\n0\r\nX-Sum: s1\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("got %q; want 200", out)
	}
	if g, want := <-got, "HTTP/2.0 body trailer X-Sum=s1"; g != want {
		t.Errorf("upstream got %q; want %q", g, want)
	}
}
