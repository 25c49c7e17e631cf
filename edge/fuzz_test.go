package edge

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
)

// sortSeeds are first bytes of connections, each sent in pieces.
var sortSeeds = []struct {
	data string
	cuts []byte
}{
	{preface, nil},
	{preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00", []byte{1}},
	{preface[:23], []byte{3}},
	{preface[:23] + "X", []byte{1}},
	{"", nil},
	{"P", nil},
	{"PRI * HTTP/1.1\r\n\r\n", []byte{2, 5}},
	{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", []byte{1}},
	{"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nok", []byte{4, 1}},
	{"\x16\x03\x01\x00\x05hello", nil},
}

// pieces cuts data into the sizes cuts gives, in turn (1 to 8 bytes).
func pieces(data []byte, cuts []byte) [][]byte {
	if len(cuts) == 0 {
		return [][]byte{data}
	}
	var out [][]byte
	for i := 0; len(data) > 0; i++ {
		n := min(1+int(cuts[i%len(cuts)]%8), len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// outcome is how a sorted connection ended.
type outcome int

const (
	closed outcome = iota
	toH1
	toH2
)

func (o outcome) String() string { return [...]string{"closed", "H1", "H2"}[o] }

// want is how a connection whose client sends data, then closes its
// sending side, must end.
func want(data []byte) outcome {
	switch h2, decided := classify(data); {
	case !decided:
		return closed
	case h2:
		return toH2
	default:
		return toH1
	}
}

// FuzzSort: however a connection's first bytes come, sorting never
// panics, and the connection ends in H1 with every byte read back, in H2
// with every byte read back, or closed — each where it must. Both of
// sniff's paths run: the peek over a socket, through a whole plain-port
// Edge, and the read-and-replay over a connection without one.
func FuzzSort(f *testing.F) {
	for _, s := range sortSeeds {
		f.Add([]byte(s.data), s.cuts)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	h2 := make(chan net.Conn, 1)
	set := metrics.NewSet()
	e := NewPlain(ln, Config{
		HandshakeTimeout: time.Minute, // never reached: each client ends
		H2:               func(c net.Conn, _ bool) { h2 <- c },
		Metrics:          set,
		Log:              zerolog.New(io.Discard),
	})
	h1 := make(chan net.Conn, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.Serve() }()
	go func() {
		defer wg.Done()
		for {
			c, err := e.H1().Accept()
			if err != nil {
				return
			}
			h1 <- c
		}
	}()
	f.Cleanup(func() { e.Close(); e.Wait(); wg.Wait() })

	f.Fuzz(func(t *testing.T, data []byte, cuts []byte) {
		if len(data) > 4096 {
			return
		}
		t.Run("edge over TCP", func(t *testing.T) { sortOverTCP(t, set, e.Addr().String(), h1, h2, data, cuts) })
		t.Run("sniff over a pipe", func(t *testing.T) { sortOverPipe(t, data, cuts) })
	})
}

// unsorted sums set's counts of connections closed unsorted.
func unsorted(set *metrics.Set) (n uint64) {
	for _, r := range []string{reasonEOF, reasonTimeout, reasonOther, reasonShutdown} {
		n += set.GetOrCreateCounter(`agimo_edge_unsorted_total{reason="` + r + `"}`).Get()
	}
	return n
}

// sortOverTCP sends data in pieces to a plain-port Edge at addr, which
// counts in set, and hands HTTP/1.x connections to h1 and HTTP/2 ones to
// h2. A client whose bytes cannot be sorted ends with a reset, on which
// the edge must close its connection and count it. Every connection ends
// with a reset from the client: no TIME_WAIT left behind, which would
// stall a long fuzzing run once the ephemeral ports wrap around.
func sortOverTCP(t *testing.T, set *metrics.Set, addr string, h1, h2 <-chan net.Conn, data, cuts []byte) {
	before := unsorted(set)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetLinger(0)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	for _, p := range pieces(data, cuts) {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	w := want(data)
	if w == closed {
		c.Close()
	}
	var got outcome
	var sc net.Conn
	deadline := time.Now().Add(20 * time.Second)
wait:
	for {
		select {
		case sc = <-h1:
			got = toH1
			break wait
		case sc = <-h2:
			got = toH2
			break wait
		default:
		}
		if unsorted(set) > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection neither sorted nor closed")
		}
		time.Sleep(time.Millisecond)
	}
	if sc != nil {
		// Every byte sent is read back, then the next byte sent, so
		// nothing was replayed twice.
		sc.SetDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, len(data)+1)
		_, err := io.ReadFull(sc, b[:len(data)])
		if err == nil {
			_, err = c.Write([]byte{0xff})
		}
		if err == nil {
			_, err = io.ReadFull(sc, b[len(data):])
		}
		if err != nil || !bytes.Equal(b, append(data[:len(data):len(data)], 0xff)) {
			t.Errorf("%s read back %q, %v; want %q then 0xff", got, b, err, data)
		}
		c.Close()
		sc.Close()
	}
	if got != w {
		t.Errorf("%q ended %s; want %s", data, got, w)
	}
}

// sortOverPipe runs sniff over one end of a pipe, which has no socket.
func sortOverPipe(t *testing.T, data, cuts []byte) {
	client, server := net.Pipe()
	defer server.Close()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for _, p := range pieces(data, cuts) {
			if _, err := client.Write(p); err != nil {
				return
			}
		}
		client.Close()
	}()
	server.SetDeadline(time.Now().Add(20 * time.Second))
	c, h2, err := sniff(server)
	got := closed
	if err == nil {
		got = toH1
		if h2 {
			got = toH2
		}
		b, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s read back %q, %v; want %q", got, b, err, data)
		}
	}
	server.Close()
	<-wrote
	if w := want(data); got != w {
		t.Errorf("%q ended %s (%v); want %s", data, got, err, w)
	}
}
