package upstream

import (
	"fmt"
	"io"
	"testing"
)

type countChunk struct{ line, data string }

// chunkCount counts, after every read however the bytes are split, the
// data of exactly the chunks whose size line, data and CRLF were all
// returned; nothing for a body it must not follow.
func TestChunkCount(t *testing.T) {
	const chunked = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	events := []countChunk{{"9", "data: 1\n\n"}, {"a;x=y", "data: 22\n\n"}, {"B", "data: 333\n\n"}}
	for _, tc := range []struct {
		name, head string
		chunks     []countChunk
		tail       string
		counted    bool
	}{
		{"events", chunked, events, "0\r\n\r\n", true},
		{"trailer-section", chunked, events, "0\r\nX-A: 1\r\n\r\n", true},
		{"unfinished", chunked, events, "4\r\nda", true},
		{"after-interim", "HTTP/1.1 100 Continue\r\n\r\n" + chunked, events, "0\r\n\r\n", true},
		{"bad-size", chunked, events, "zz\r\n5\r\nhello\r\n0\r\n\r\n", true},
		{"size-too-long", chunked, events, "0000000000000005\r\nhello\r\n0\r\n\r\n", true},
		// A body that only looks chunked, and one the filter follows.
		{"fixed-length", "HTTP/1.1 200 OK\r\nContent-Length: 33\r\n\r\n", []countChunk{{"5", "hello"}, {"5", "world"}}, "0\r\n\r\n", false},
		{"filtered", "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie\r\nTransfer-Encoding: chunked\r\n\r\n", events, "0\r\n\r\n", false},
	} {
		in := tc.head
		var ends, wholes []int // where each chunk ends in in, the count then
		whole := 0
		for _, ch := range tc.chunks {
			in += ch.line + "\r\n" + ch.data + "\r\n"
			whole += len(ch.data)
			ends, wholes = append(ends, len(in)), append(wholes, whole)
		}
		in += tc.tail
		for _, step := range []int{1, 2, 3, 7, 64, len(in)} {
			for _, buf := range []int{1, 5, 4096} {
				c := NewTrailerFieldConn(&stepConn{data: []byte(in), step: step})
				b := make([]byte, buf)
				got := 0
				for {
					n, err := c.Read(b)
					got += n
					want := 0
					for i, end := range ends {
						if tc.counted && got >= end {
							want = wholes[i]
						}
					}
					if c.chunks.whole != want {
						t.Fatalf("%s in reads of %d into %d bytes: %d bytes read, whole chunks' data %d; want %d", tc.name, step, buf, got, c.chunks.whole, want)
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if tc.name == "filtered" {
					continue // the output differs from in
				}
				if got != len(in) {
					t.Fatalf("%s: read %d bytes; want %d", tc.name, got, len(in))
				}
				// The next request starts a new response.
				c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
				if c.chunks.whole != 0 || c.chunks.received(0) {
					t.Errorf("%s: after a write, whole chunks' data %d; want 0", tc.name, c.chunks.whole)
				}
			}
		}
	}
}

// loopConn returns head once, then body for every read.
type loopConn struct {
	stepConn
	head, body []byte
}

func (c *loopConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return copy(b, c.body), nil
}

// Following a chunked body's framing, beside the baseline of a body that
// is not followed (fixed length): reads of 64 Server-Sent Events.
func BenchmarkTrailerFieldConnBody(b *testing.B) {
	var body []byte
	for i := range 64 {
		ev := fmt.Sprintf("id: %d\ndata: 1765110000000000000\n\n", i)
		body = fmt.Appendf(body, "%x\r\n%s\r\n", len(ev), ev)
	}
	for _, tc := range []struct{ name, head string }{
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"baseline-fixed-length", "HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := NewTrailerFieldConn(&loopConn{head: []byte(tc.head), body: body})
			buf := make([]byte, len(body))
			c.Read(buf)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				c.Read(buf)
			}
		})
	}
}
