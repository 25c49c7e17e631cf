package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agimo/agimo/accesslog"
)

// The chunks of a chunked response that reached the proxy together go to
// the client in one chunk (one write), as nginx sends whatever it has
// read; and a chunk is never held back waiting for more: each burst the
// upstream sends must reach the client before the upstream sends the next,
// which it does only once the client has signalled it got the burst.
func TestSSEChunksReceivedTogetherGoTogether(t *testing.T) {
	ev := func(i int) string { return fmt.Sprintf("id: %d\ndata: event %d\n\n", i, i) }
	chunk := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }
	half := chunk(ev(2))[:10]
	sent := len(half) - len(fmt.Sprintf("%x\r\n", len(ev(2)))) // of ev(2)'s data
	for _, tc := range []struct {
		name string
		// bursts are the upstream's writes after the head, each sent once
		// the client got the events of the one before.
		bursts []string
		// want, per burst, the chunks the client gets.
		want [][]string
		// cut: the upstream closes without the last chunk, and so must
		// the client's response end (upstream.ChunkedEnd).
		cut bool
	}{
		{"together", []string{chunk(ev(1)) + chunk(ev(2)) + chunk(ev(3)), "0\r\n\r\n"},
			[][]string{{ev(1) + ev(2) + ev(3)}, nil}, false},
		{"alone-then-together", []string{chunk(ev(1)), chunk(ev(2)) + chunk(ev(3)) + chunk(ev(4)), "0\r\n\r\n"},
			[][]string{{ev(1)}, {ev(2) + ev(3) + ev(4)}, nil}, false},
		// The whole chunk goes at once; the rest of a chunk not yet whole
		// goes as fasthttp reads it, never waiting for the rest.
		{"unfinished-after", []string{chunk(ev(1)) + half, chunk(ev(2))[len(half):] + "0\r\n\r\n"},
			[][]string{{ev(1), ev(2)[:sent]}, {ev(2)[sent:]}}, false},
		{"cut", []string{chunk(ev(1)) + chunk(ev(2))}, [][]string{{ev(1) + ev(2)}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, lines := startLogged(t, oneService, accesslog.Options{})
			next := make(chan struct{})
			addr := listenRaw(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
				for i, b := range tc.bursts {
					if i > 0 {
						select {
						case <-next:
						case <-t.Context().Done():
							return
						}
					}
					// The head goes in the first burst's write: all of it
					// reaches the proxy at once.
					if _, err := io.WriteString(c, head+b); err != nil {
						return
					}
					head = ""
				}
			})
			h.setEndpoints("apps", "app", true, addr)

			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Only against a hang: the order of events is what is tested.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET /events HTTP/1.1\r\nHost: app.test\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || len(resp.TransferEncoding) != 1 {
				t.Fatalf("got %d %v; want 200 chunked", resp.StatusCode, resp.TransferEncoding)
			}
			// resp.Body would hide the chunks: read them from br.
			relayed := 0
			for i, want := range tc.want {
				if i > 0 {
					next <- struct{}{}
				}
				var got []string
				for len(got) < len(want) {
					got = append(got, readChunk(t, br))
					relayed += len(got[len(got)-1])
				}
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("burst %d: got chunks %q; want %q", i, got, want)
				}
			}
			if tc.cut {
				if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
					t.Fatalf("after the cut, got %q (%v); want the connection closed", rest, err)
				}
			} else if last := readChunk(t, br); last != "" {
				t.Fatalf("after the last burst, chunk %q; want the last chunk", last)
			}
			h.waitMetric(`agimo_active_requests{host="app.test"}`, 0)
			wantFields(t, lines.next(t), map[string]any{"status": 200, "bytes_out": relayed})
		})
	}
}

// readChunk reads one chunk from br and returns its data: "" for the
// last chunk, whose (empty) trailer section it reads too.
func readChunk(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("chunk size: %v", err)
	}
	size, err := strconv.ParseInt(strings.TrimSuffix(line, "\r\n"), 16, 32)
	if err != nil {
		t.Fatalf("chunk size line %q: %v", line, err)
	}
	data := make([]byte, size+2)
	if _, err := io.ReadFull(br, data); err != nil {
		t.Fatalf("chunk of %d bytes: %v", size, err)
	}
	if string(data[size:]) != "\r\n" {
		t.Fatalf("chunk %q does not end in CRLF", data)
	}
	return string(data[:size])
}
