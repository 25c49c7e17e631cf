package proxy_test

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestZZExplore(t *testing.T) {
	data, _ := os.ReadFile(os.Getenv("EXPLORE"))
	h, u := advSetup(t, oneService)
	for _, c := range strings.Split(string(data), "\n====\n") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		raw := strings.ReplaceAll(c, "\\r\\n", "\r\n")
		raw = strings.ReplaceAll(raw, "\\t", "\t")
		raw = strings.ReplaceAll(raw, "\\0", "\x00")
		raw = strings.ReplaceAll(raw, "\\x01", "\x01")
		raw = strings.ReplaceAll(raw, "\\x7f", "\x7f")
		raw = strings.ReplaceAll(raw, "\\r", "\r")
		raw = strings.ReplaceAll(raw, "\\n", "\n")
		if n := os.Getenv("BIG"); n != "" {
			raw = strings.ReplaceAll(raw, "<BIG>", strings.Repeat("a", 20000))
			raw = strings.ReplaceAll(raw, "<MANY>", strings.Repeat("X-Hdr: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n", 250))
		}
		eof := strings.HasSuffix(raw, "<EOF>")
		raw = strings.TrimSuffix(raw, "<EOF>")
		u.reset()
		cn, _ := net.Dial("tcp", h.addr)
		io.WriteString(cn, raw)
		if eof {
			cn.(*net.TCPConn).CloseWrite()
		}
		res := advRead(cn, 2*time.Second)
		cn.Close()
		u.settle(10 * time.Millisecond)
		reqs, errs := u.requests()
		t.Logf("\nIN  %q\nOUT %v\nUP%s\n  parsed %d reqs, errs %v", clip(raw, 300), res, u.dump(), len(reqs), errs)
	}
}
