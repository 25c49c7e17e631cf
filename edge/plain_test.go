package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func TestPlainH2C(t *testing.T) {
	r := newRig(t, rigOpts{})
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	cases := []struct {
		name string
		get  func(t *testing.T) string
		want string
	}{
		{"go http2.Transport", func(t *testing.T) string {
			resp, err := (&http.Client{Transport: tr}).Post("http://"+r.addr+"/go", "text/plain", strings.NewReader("hi"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b)
		}, "h2 proto=HTTP/2.0 tls=false host=" + r.addr + " path=/go body=hi"},
		{"curl --http2-prior-knowledge", func(t *testing.T) string {
			return curl(t, "--http2-prior-knowledge", "http://"+r.addr+"/curl")
		}, "h2 proto=HTTP/2.0 tls=false host=" + r.addr + " path=/curl body="},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.get(t); got != c.want {
				t.Errorf("got %q; want %q", got, c.want)
			}
			if got := r.counter(`agimo_edge_connections_total{protocol="h2c"}`); got != uint64(i+1) {
				t.Errorf("h2c connections = %d; want %d", got, i+1)
			}
		})
	}
}

// curl runs curl with args and returns its output (the body).
func curl(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "20"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("curl %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatalf("curl %v: %v", args, err)
	}
	return string(out)
}

// HTTP/1.x requests reach H1 intact, however they are cut, and H1 gets
// the socket itself: nothing was read from it.
func TestPlainH1Pieces(t *testing.T) {
	r := newRig(t, rigOpts{})
	cases := []struct {
		name, req, want string
	}{
		{"GET", "GET /g HTTP/1.1\r\nHost: a\r\n\r\n", "path=/g body="},
		{"POST", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "path=/p body=hello"},
		{"PUT", "PUT /u HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok", "path=/u body=ok"},
		// Shares the preface's first three bytes.
		{"PRIX", "PRIX /x HTTP/1.1\r\nHost: a\r\n\r\n", "path=/x body="},
	}
	for _, c := range cases {
		for _, piece := range []int{1, 3, len(c.req)} {
			t.Run(fmt.Sprintf("%s/pieces of %d", c.name, piece), func(t *testing.T) {
				conn, err := net.Dial("tcp", r.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(20 * time.Second))
				for s := c.req; s != ""; {
					n := min(piece, len(s))
					if _, err := io.WriteString(conn, s[:n]); err != nil {
						t.Fatal(err)
					}
					s = s[n:]
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				want := "h1 tls=false conn=*net.TCPConn host=a " + c.want
				if string(b) != want {
					t.Errorf("pieces of %d: got %q; want %q", piece, b, want)
				}
			})
		}
	}
}

// A client that shows neither HTTP/1.x nor the whole preface is closed,
// and counted.
func TestPlainUnsorted(t *testing.T) {
	r := newRig(t, rigOpts{timeout: 300 * time.Millisecond})
	cases := []struct {
		name      string
		send      string
		closeSend bool
		reason    string
	}{
		{"silent", "", false, "timeout"},
		{"part of the preface", preface[:16], false, "timeout"},
		{"part of the preface, then FIN", preface[:16], true, "eof"},
		{"FIN at once", "", true, "eof"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := r.counter(`agimo_edge_unsorted_total{reason="` + c.reason + `"}`)
			conn, err := net.Dial("tcp", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(conn, c.send)
			if c.closeSend {
				conn.(*net.TCPConn).CloseWrite()
			}
			b, err := io.ReadAll(conn)
			if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
				t.Fatalf("read: %v; want the edge to close the connection", err)
			}
			if len(b) != 0 {
				t.Errorf("got %q; want nothing", b)
			}
			if got := r.counter(`agimo_edge_unsorted_total{reason="` + c.reason + `"}`); got != before+1 {
				t.Errorf("unsorted{reason=%q} = %d; want %d", c.reason, got, before+1)
			}
		})
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
