package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Past max_parked, a new request for the service gets 503 with
// Retry-After at once, and parking works again once there is room.
func TestMaxParked(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, "timeout = \"60s\"\nmax_parked = 2", 1))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	results := make(chan int, 2)
	for range 2 {
		go func() {
			resp, _, err := h.get("app.test", "/")
			if err != nil {
				results <- 0
				return
			}
			results <- resp.StatusCode
		}()
	}
	h.waitMetric(`agimo_parked_requests{host="app.test"}`, 2)
	start := time.Now()
	resp, _, err := h.get("app.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third request: got %d Retry-After=%q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("rejection took %v; want it at once, not after the park timeout", el)
	}
	if got := h.metric(`agimo_park_rejected_total{host="app.test"}`); got != 1 {
		t.Errorf("rejected = %v; want 1", got)
	}
	h.setEndpoints("apps", "app", true, up.addr())
	for range 2 {
		if code := <-results; code != 200 {
			t.Errorf("parked request got %d; want 200", code)
		}
	}
}

// max_request_body: a declared length over the limit gets 413 before the
// upstream is dialled; a chunked body is cut off at the limit and gets 413.
func TestMaxRequestBody(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nmax_request_body = \"1KiB\"", 1))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	h.setEndpoints("apps", "app", true, up.addr())
	for _, tc := range []struct {
		name     string
		body     io.Reader
		length   int64
		want     int
		wantHits int64
	}{
		{"fits", strings.NewReader(strings.Repeat("x", 1024)), 1024, 200, 1},
		{"declared-too-large", strings.NewReader(strings.Repeat("x", 1025)), 1025, 413, 0},
		{"chunked-fits", io.MultiReader(strings.NewReader(strings.Repeat("x", 1000))), -1, 200, 1},
		{"chunked-too-large", io.MultiReader(strings.NewReader(strings.Repeat("x", 5000))), -1, 413, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.hits.Load()
			req, _ := http.NewRequest("POST", "http://"+h.addr+"/", tc.body)
			req.Host, req.ContentLength = "app.test", tc.length
			resp, _, err := do(req)
			if err != nil && tc.name == "chunked-too-large" {
				// The proxy answers 413 and closes while the client may
				// still be writing: a broken pipe is the same refusal.
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d; want %d", resp.StatusCode, tc.want)
			}
			if hits := up.hits.Load() - before; tc.wantHits >= 0 && hits != tc.wantHits {
				t.Errorf("upstream hits = %d; want %d", hits, tc.wantHits)
			}
		})
	}
}

// A request body streams to the upstream as it arrives: the upstream sees
// the first bytes while the client has not finished sending (a proxy that
// buffered the body would deadlock here), and all 64 MiB arrive intact.
func TestRequestBodyStreams(t *testing.T) {
	h := startHarness(t, oneService)
	firstBytes := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Error(err)
			return
		}
		close(firstBytes)
		sum := sha256.New()
		sum.Write(buf)
		io.Copy(sum, r.Body)
		io.WriteString(w, hex.EncodeToString(sum.Sum(nil)))
	})
	h.setEndpoints("apps", "app", true, up.addr())

	const total = 64 << 20
	pr, pw := io.Pipe()
	want := sha256.New()
	go func() {
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = byte(i)
		}
		want.Write(chunk)
		pw.Write(chunk)
		select {
		case <-firstBytes:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(fmt.Errorf("upstream saw nothing of the body before it was complete"))
			return
		}
		for sent := len(chunk); sent < total; sent += len(chunk) {
			want.Write(chunk)
			pw.Write(chunk)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PUT", "http://"+h.addr+"/upload", pr)
	req.Host = "app.test"
	resp, body, err := do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != hex.EncodeToString(want.Sum(nil)) {
		t.Errorf("got %d %q; want 200 and the body's sha256", resp.StatusCode, body)
	}
}
