package proxy_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// Nothing is added to a response the upstream sent: the client receives
// the upstream's fields, no Content-Type, Date or Server of the proxy's
// own (issue 10 item 11: a 101 got "Content-Type: text/plain"). Framing
// fields may be re-made, so each case lists what the client must get.
func TestResponseHeadNothingAdded(t *testing.T) {
	h, u := advSetup(t, oneService)
	const upgrade = "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	const get = "GET /g HTTP/1.1\r\nHost: app.test\r\n\r\n"
	for _, tc := range []struct {
		name, req, answer string
		method            string // for the client's parser
		// want is the client's fields, in any order ("Name: value").
		want []string
	}{
		{name: "101", req: upgrade,
			answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-App: a\r\n\r\n",
			want:   []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "X-App: a"}},
		{name: "upgrade-refused", req: upgrade,
			answer: "HTTP/1.1 403 Forbidden\r\nX-App: a\r\nContent-Length: 4\r\n\r\nnope",
			want:   []string{"X-App: a", "Content-Length: 4", "Connection: close"}},
		{name: "200", req: get,
			answer: "HTTP/1.1 200 OK\r\nX-App: a\r\nContent-Length: 2\r\n\r\nok",
			want:   []string{"X-App: a", "Content-Length: 2"}},
		{name: "200-chunked", req: get,
			answer: "HTTP/1.1 200 OK\r\nX-App: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
			want:   []string{"X-App: a", "Transfer-Encoding: chunked"}},
		{name: "204", req: get,
			answer: "HTTP/1.1 204 No Content\r\nX-App: a\r\n\r\n",
			want:   []string{"X-App: a"}},
		{name: "304", req: get,
			answer: "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nX-App: a\r\n\r\n",
			want:   []string{"Etag: \"v1\"", "X-App: a"}},
		{name: "head", req: "HEAD /g HTTP/1.1\r\nHost: app.test\r\n\r\n", method: "HEAD",
			answer: "HTTP/1.1 200 OK\r\nX-App: a\r\nContent-Length: 20\r\n\r\n",
			want:   []string{"X-App: a", "Content-Length: 20"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.reset()
			u.setRespond(func(int, *http.Request, []byte) string { return tc.answer })
			res := advSend(t, h.addr, tc.req, 500*time.Millisecond, tc.method)
			if len(res.Responses) == 0 {
				t.Fatalf("no response: %v", res)
			}
			_, fields := advHead(res.Raw)
			var got []string
			ids := 0
			for _, f := range fields {
				if http.CanonicalHeaderKey(f.Name) == "X-Request-Id" {
					ids++ // Agimo's own, on every response (issue 14)
					continue
				}
				got = append(got, http.CanonicalHeaderKey(f.Name)+": "+f.Value)
			}
			if ids != 1 {
				t.Errorf("client got %d X-Request-Id fields; want 1", ids)
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				k, v, _ := strings.Cut(w, ": ")
				want[i] = http.CanonicalHeaderKey(k) + ": " + v
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("client got fields %q; want %q (upstream sent %q)", got, want, tc.answer)
			}
		})
	}
}
