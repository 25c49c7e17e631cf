package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Agimo's own early answers reach a client that is still uploading: the
// connection is closed like nginx's lingering close (half-close, read
// and discard for a while, then close), not with unread bytes, whose
// reset can destroy the answer before the client reads it: Go's client
// then reports the reset of its body's write instead (issue 10).
func TestEarlyAnswerSurvivesUpload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      string
		ready    bool
		attempts int
		want     int
	}{
		{"413-declared-length", strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nmax_request_body = \"1KiB\"", 1), true, 20, 413},
		{"503-park-timeout", strings.Replace(oneService, `timeout = "2s"`, `timeout = "200ms"`, 1), false, 10, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, tc.cfg)
			if tc.ready {
				h.setEndpoints("apps", "app", true, newRecUpstream(t).addr())
			}
			for i := range tc.attempts {
				req, _ := http.NewRequest("POST", "http://"+h.addr+"/", io.LimitReader(zeros{}, 64<<20))
				req.Host, req.ContentLength = "app.test", 64<<20
				resp, _, err := do(req)
				if err != nil {
					t.Fatalf("attempt %d: %v; want %d", i, err, tc.want)
				}
				if resp.StatusCode != tc.want {
					t.Fatalf("attempt %d: got %d; want %d", i, resp.StatusCode, tc.want)
				}
			}
			h.waitMetric(`agimo_open_connections`, 0)
		})
	}
}
