package upstream

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
)

// stepConn yields data a few bytes per read, as a socket may.
type stepConn struct {
	net.Conn
	data []byte
	step int
}

func (c *stepConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), c.step)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *stepConn) Write(b []byte) (int, error) { return len(b), nil }

// readFiltered reads n bytes (all if n < 0) through c with a buffer of
// size buf.
func readFiltered(t *testing.T, c net.Conn, n, buf int) []byte {
	t.Helper()
	var out []byte
	b := make([]byte, buf)
	for n < 0 || len(out) < n {
		k := len(b)
		if n >= 0 {
			k = min(k, n-len(out))
		}
		m, err := c.Read(b[:k])
		out = append(out, b[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// smuggledChunk is a chunk whose data looks like a last chunk and a
// trailer section: it must pass untouched.
var smuggledChunk = fmt.Sprintf("%x\r\n%s\r\n", len("0\r\nSet-Cookie: x\r\n\r\n"), "0\r\nSet-Cookie: x\r\n\r\n")

// trailerFieldConn takes from a response head's Trailer fields only the
// names fasthttp refuses in trailers, and then from its trailer section
// the fields with those names, however the bytes are split into reads;
// it never touches chunk data, a fixed-length body or what follows a 101.
func TestTrailerFieldConn(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", ""},
		{"kept", "HTTP/1.1 200 OK\r\nTrailer: X-A, grpc-status\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: 1\r\n\r\n", ""},
		{"some-refused", "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie, X-A\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nTrailer: X-A\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"all-refused", "HTTP/1.1 200 OK\r\nX-B: b\r\ntrailer :Set-Cookie,Content-Length , Host\r\nContent-Length: 2\r\n\r\nok",
			"HTTP/1.1 200 OK\r\nX-B: b\r\nContent-Length: 2\r\n\r\nok"},
		{"bare-lf", "HTTP/1.1 200 OK\nTrailer: Set-Cookie,X-A\nContent-Length: 2\n\nok",
			"HTTP/1.1 200 OK\nTrailer: X-A\r\nContent-Length: 2\n\nok"},
		{"after-interim", "HTTP/1.1 100 Continue\r\nTrailer: Set-Cookie\r\n\r\nHTTP/1.1 200 OK\r\nTrailer: Set-Cookie\r\nContent-Length: 0\r\n\r\n",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"body-untouched", "HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\nx\r\nTrailer: Set-Cookie\r\n\r\n", ""},
		{"after-101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nTrailer: Set-Cookie\r\n\r\n", ""},
		// The body's chunks are followed to the trailer section once a
		// refused name was taken out of the Trailer field.
		{"section", "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie, X-A\r\nTransfer-Encoding: chunked\r\n\r\n4;e=1\r\nbody\r\n" + smuggledChunk + "0\r\nSet-Cookie: s=1\r\nX-A: 1\r\nhost: h\r\n\r\n",
			"HTTP/1.1 200 OK\r\nTrailer: X-A\r\nTransfer-Encoding: chunked\r\n\r\n4;e=1\r\nbody\r\n" + smuggledChunk + "0\r\nX-A: 1\r\n\r\n"},
		{"section-after-interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nTrailer: Set-Cookie\r\n\r\nA\r\n0123456789\r\n0\r\nSet-Cookie: s=1\r\n\r\n",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"},
		// Not followed: a fixed-length body, and a section whose Trailer
		// field named nothing refused (fasthttp fails it as before).
		{"fixed-body", "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie\r\nContent-Length: 22\r\n\r\n0\r\nSet-Cookie: s=1\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\n0\r\nSet-Cookie: s=1\r\n\r\n"},
		{"section-unannounced", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nSet-Cookie: s=1\r\n\r\n", ""},
		{"bad-chunk-size", "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n0\r\nSet-Cookie: s=1\r\n\r\n",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n0\r\nSet-Cookie: s=1\r\n\r\n"},
		{"long-line", "HTTP/1.1 200 OK\r\nX-Long: " + string(bytes.Repeat([]byte("a"), 40<<10)) + "\r\nTrailer: Set-Cookie\r\n\r\n",
			"HTTP/1.1 200 OK\r\nX-Long: " + string(bytes.Repeat([]byte("a"), 40<<10)) + "\r\n\r\n"},
	} {
		want := tc.want
		if want == "" {
			want = tc.in
		}
		for _, step := range []int{1, 2, 3, 7, 64, len(tc.in)} {
			for _, buf := range []int{1, 5, 4096} {
				c := NewTrailerFieldConn(&stepConn{data: []byte(tc.in), step: step})
				if got := readFiltered(t, c, -1, buf); string(got) != want {
					t.Errorf("%s in reads of %d into %d bytes: got %q; want %q", tc.name, step, buf, clipTest(got), clipTest([]byte(want)))
				}
			}
		}
	}
}

// A write starts a new response head: its Trailer field is filtered too.
func TestTrailerFieldConnNextResponse(t *testing.T) {
	first := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	second := "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie\r\nContent-Length: 0\r\n\r\n"
	c := NewTrailerFieldConn(&stepConn{data: []byte(first + second), step: 5})
	if got := readFiltered(t, c, len(first), 16); string(got) != first {
		t.Fatalf("first response: got %q", got)
	}
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if got, want := readFiltered(t, c, -1, 16), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"; string(got) != want {
		t.Errorf("second response: got %q; want %q", got, want)
	}
}

func clipTest(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// FuzzTrailerFieldConn: the filter's output does not depend on how the
// bytes are split into reads, and bytes without a Trailer field pass
// unchanged.
func FuzzTrailerFieldConn(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nTrailer: Set-Cookie, X-A\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntrailer:host\r\n\r\nbody",
		"HTTP/1.1 200 OK\nX: y\n\nTrailer: Set-Cookie\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole := readFiltered(t, NewTrailerFieldConn(&stepConn{data: in, step: len(in) + 1}), -1, 4096)
		split := readFiltered(t, NewTrailerFieldConn(&stepConn{data: in, step: int(step)%9 + 1}), -1, int(step)%13+1)
		if !bytes.Equal(whole, split) {
			t.Fatalf("%q: whole %q; split %q", in, whole, split)
		}
		if !bytes.Contains(bytes.ToLower(in), []byte("trailer")) && !bytes.Equal(whole, in) {
			t.Fatalf("%q: got %q; want it unchanged", in, whole)
		}
	})
}
