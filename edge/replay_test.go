package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	client.SetDeadline(time.Now().Add(20 * time.Second))
	server.SetDeadline(time.Now().Add(20 * time.Second))
	return client, server
}

func read(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	b := make([]byte, n)
	m, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:m])
}

// SyscallConn exposes the socket only once the replayed bytes are read:
// before, a peek at the socket would miss them.
func TestReplayConnSyscallConn(t *testing.T) {
	client, server := tcpPair(t)
	io.WriteString(client, "def")
	rc := NewReplayConn(server, []byte("abc"))
	steps := []struct {
		read     int
		want     string
		buffered int
		err      error
	}{
		{0, "", 3, ErrReplayPending},
		{2, "ab", 1, ErrReplayPending},
		{10, "c", 0, nil}, // the replayed bytes alone, not the socket's behind them
		{10, "def", 0, nil},
	}
	for i, s := range steps {
		if s.read > 0 {
			if got := read(t, rc, s.read); got != s.want {
				t.Errorf("step %d: read %q; want %q", i, got, s.want)
			}
		}
		if got := rc.Buffered(); got != s.buffered {
			t.Errorf("step %d: Buffered() = %d; want %d", i, got, s.buffered)
		}
		raw, err := rc.SyscallConn()
		if !errors.Is(err, s.err) {
			t.Fatalf("step %d: SyscallConn: %v; want %v", i, err, s.err)
		}
		if err == nil {
			fd := -1
			raw.Control(func(f uintptr) { fd = int(f) })
			if fd < 0 {
				t.Errorf("step %d: no descriptor", i)
			}
		}
	}

	// Without a socket under it, no SyscallConn even once drained.
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if _, err := NewReplayConn(p1, nil).SyscallConn(); !errors.Is(err, errNoSyscallConn) {
		t.Errorf("over a pipe: SyscallConn: %v; want %v", err, errNoSyscallConn)
	}
}

// Detach hands the pending bytes and the socket apart, for a splice.
func TestReplayConnDetach(t *testing.T) {
	client, server := tcpPair(t)
	io.WriteString(client, "tail")
	rc := NewReplayConn(server, []byte("hello"))
	if got := read(t, rc, 1); got != "h" {
		t.Fatalf("read %q; want %q", got, "h")
	}
	head, raw := rc.Detach()
	if string(head) != "ello" || raw != server {
		t.Errorf("Detach() = %q, %T; want %q and the socket", head, raw, "ello")
	}
	if got := read(t, raw, 10); got != "tail" {
		t.Errorf("socket read %q; want %q", got, "tail")
	}
	if _, err := rc.SyscallConn(); err != nil {
		t.Errorf("SyscallConn after Detach: %v", err)
	}
}

func TestReason(t *testing.T) {
	opErr := func(err error) error { return &net.OpError{Op: "read", Net: "tcp", Err: err} }
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"deadline", opErr(os.ErrDeadlineExceeded), "timeout"},
		{"EOF", io.EOF, "eof"},
		{"unexpected EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), "eof"},
		{"reset", opErr(os.NewSyscallError("read", syscall.ECONNRESET)), "eof"},
		{"not TLS", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "not_tls"},
		{"alert sent", (&alertWatch{alert: 70, seen: true}).withAlert(errors.New("tls: client offered only unsupported versions")), "protocol_version_not_supported"},
		{"unknown alert", (&alertWatch{alert: 200, seen: true}).withAlert(errors.New("x")), "other"},
		{"alert received in the clear", (&alertWatch{peer: 48, peerSeen: true}).withAlert(errors.New("local error: tls: bad record MAC")), "unknown_certificate_authority"},
		{"alert sent and one received", (&alertWatch{alert: 70, seen: true, peer: 48, peerSeen: true}).withAlert(errors.New("x")), "protocol_version_not_supported"},
		{"other", errors.New("x"), "other"},
	}
	for _, c := range cases {
		if got := reason(c.err); got != c.want {
			t.Errorf("%s: reason(%v) = %q; want %q", c.name, c.err, got, c.want)
		}
	}
}

// alertWatch finds a clear alert record among those of one write.
func TestAlertWatch(t *testing.T) {
	cases := []struct {
		name  string
		write string
		alert uint8
		seen  bool
	}{
		{"alert alone", "\x15\x03\x03\x00\x02\x02\x46", 70, true},
		{"after a handshake record", "\x16\x03\x03\x00\x03abc\x15\x03\x03\x00\x02\x02\x28", 40, true},
		{"encrypted", "\x17\x03\x03\x00\x02\x02\x46", 0, false},
		{"cut short", "\x15\x03\x03\x00\x02\x02", 0, false},
		{"record longer than the write", "\x16\x03\x03\x01\x00abc", 0, false},
	}
	for _, c := range cases {
		var w alertWatch
		w.sawWrite([]byte(c.write))
		if w.alert != c.alert || w.seen != c.seen {
			t.Errorf("%s: got alert %d, %v; want %d, %v", c.name, w.alert, w.seen, c.alert, c.seen)
		}
	}
}

// alertWatch follows the client's records across reads, however they are
// cut, and keeps the last alert sent in the clear.
func TestAlertWatchReads(t *testing.T) {
	const (
		hello     = "\x16\x03\x01\x00\x03abc"
		ccs       = "\x14\x03\x03\x00\x01\x01"
		unknownCA = "\x15\x03\x03\x00\x02\x02\x30"
	)
	cases := []struct {
		name   string
		stream string
		peer   uint8
		seen   bool
	}{
		{"clear alert after the hello (OpenSSL's TLS 1.3 client)", hello + ccs + unknownCA, 48, true},
		{"encrypted TLS 1.3 record", hello + "\x17\x03\x03\x00\x02\x02\x30", 0, false},
		{"encrypted TLS 1.2 alert", hello + "\x15\x03\x03\x00\x1a" + strings.Repeat("x", 26), 0, false},
		{"alert payload cut short", hello + "\x15\x03\x03\x00\x02\x02", 0, false},
		{"empty record then the alert", hello + "\x17\x03\x03\x00\x00" + unknownCA, 48, true},
	}
	for _, c := range cases {
		for _, size := range []int{1, 2, 3, 5, 7, len(c.stream)} {
			var w alertWatch
			for b := []byte(c.stream); len(b) > 0; {
				n := min(size, len(b))
				w.sawRead(b[:n])
				b = b[n:]
			}
			if w.peer != c.peer || w.peerSeen != c.seen {
				t.Errorf("%s, reads of %d: got alert %d, %v; want %d, %v", c.name, size, w.peer, w.peerSeen, c.peer, c.seen)
			}
		}
	}
}
