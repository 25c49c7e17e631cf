package proxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// upstream is a real HTTP server on 127.0.0.1:0 that counts its hits.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
	last atomic.Pointer[http.Request]
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.last.Store(r)
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// addr is the upstream's "127.0.0.1:port".
func (u *upstream) addr() string { return u.Listener.Addr().String() }

// rawUpstream is a TCP server on 127.0.0.1:0 that records the bytes of
// each request head it receives and answers each with a fixed response,
// so tests can assert exactly what the proxy forwarded.
type rawUpstream struct {
	ln       net.Listener
	response string
	mu       sync.Mutex // guards heads
	heads    []string
	wg       sync.WaitGroup
}

func newRawUpstream(t testing.TB, response string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, response: response}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						head.WriteString(line)
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					// Parse with net/http as a second opinion and drain the body.
					req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head.String())))
					if err == nil && req.ContentLength > 0 {
						io.CopyN(io.Discard, br, req.ContentLength)
					}
					u.mu.Lock()
					u.heads = append(u.heads, head.String())
					u.mu.Unlock()
					if _, err := io.WriteString(c, u.response); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); u.wg.Wait() })
	return u
}

func (u *rawUpstream) addr() string { return u.ln.Addr().String() }

func (u *rawUpstream) received() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.heads...)
}
