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
// reset can destroy the answer before the client reads it (issue 10).
func TestEarlyAnswerSurvivesUpload(t *testing.T) {
	h := startHarness(t, strings.Replace(oneService, `timeout = "2s"`, "timeout = \"2s\"\nmax_request_body = \"1KiB\"", 1))
	h.setEndpoints("apps", "app", true, newRecUpstream(t).addr())
	const attempts = 20
	for i := range attempts {
		req, _ := http.NewRequest("POST", "http://"+h.addr+"/", io.LimitReader(zeros{}, 64<<20))
		req.Host, req.ContentLength = "app.test", 64<<20
		resp, _, err := do(req)
		if err != nil {
			t.Fatalf("attempt %d: %v; want 413", i, err)
		}
		if resp.StatusCode != 413 {
			t.Fatalf("attempt %d: got %d; want 413", i, resp.StatusCode)
		}
	}
}
