package load

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The generators run against in-process servers for a fraction of a
// second; the assertions are about what was counted, never about speed.

func TestHTTPCountsRequestsAndBytes(t *testing.T) {
	var hosts = make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hosts <- r.Host:
		default:
		}
		if r.Method == http.MethodPost {
			n, _ := io.Copy(io.Discard, r.Body)
			io.WriteString(w, strconv.FormatInt(n, 10))
			return
		}
		io.WriteString(w, "Hello, World!")
	}))
	defer srv.Close()

	res, err := HTTP(context.Background(), Config{URL: srv.URL + "/small", Host: "app.test", Conns: 3, Dur: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("ops %d errors %d (%v)", res.Ops, res.Errors, res.ErrKinds)
	}
	if res.Bytes != 13*res.Ops {
		t.Errorf("bytes %d, want 13 per request (%d)", res.Bytes, 13*res.Ops)
	}
	if got := res.Latency.Count(); got != uint64(res.Ops) {
		t.Errorf("latency samples %d, ops %d", got, res.Ops)
	}
	if h := <-hosts; h != "app.test" {
		t.Errorf("Host %q, want app.test", h)
	}

	res, err = HTTP(context.Background(), Config{URL: srv.URL + "/upload", Conns: 2, Dur: 100 * time.Millisecond, BodySize: 65536})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Bytes != int64(len("65536"))*res.Ops {
		t.Errorf("upload: ops %d bytes %d errors %v: the server did not see 64 KiB bodies", res.Ops, res.Bytes, res.ErrKinds)
	}
}

func TestHTTPCountsErrorStatuses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusBadGateway)
	}))
	defer srv.Close()
	res, err := HTTP(context.Background(), Config{URL: srv.URL, Conns: 2, Dur: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 0 || res.Errors == 0 || res.ErrKinds["status 502"] != res.Errors {
		t.Errorf("ops %d errors %d kinds %v; want only status 502 errors", res.Ops, res.Errors, res.ErrKinds)
	}
}

func TestHTTPRejectsBadTarget(t *testing.T) {
	if _, err := HTTP(context.Background(), Config{URL: "ftp://x"}); err == nil {
		t.Error("ftp:// accepted")
	}
}

func TestWSEchoRoundTrips(t *testing.T) {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if c.WriteMessage(typ, b) != nil {
				return
			}
		}
	}))
	defer srv.Close()
	res, err := WS(context.Background(), Config{URL: srv.URL + "/ws", Conns: 4, Dur: 200 * time.Millisecond, MsgSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("ops %d errors %d (%v)", res.Ops, res.Errors, res.ErrKinds)
	}
	if res.Bytes != 64*res.Ops {
		t.Errorf("bytes %d, want 64 per round trip", res.Bytes)
	}
}

func TestWSReportsFailedHandshake(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	res, err := WS(context.Background(), Config{URL: srv.URL, Conns: 1, Dur: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 0 || res.ErrKinds["websocket handshake: status 404"] == 0 {
		t.Errorf("ops %d kinds %v; want handshake errors", res.Ops, res.ErrKinds)
	}
}

func TestSSECountsEvents(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 10 {
			io.WriteString(w, "data: "+strconv.Itoa(i)+"\n\n")
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	res, err := SSE(context.Background(), Config{URL: srv.URL, Conns: 2, Dur: 200 * time.Millisecond}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("ops %d errors %d (%v)", res.Ops, res.Errors, res.ErrKinds)
	}
	if res.Events < 10*res.Ops {
		t.Errorf("events %d for %d streams of 10", res.Events, res.Ops)
	}
}

func TestEventSplitter(t *testing.T) {
	stream := "data: a\n\ndata: b\n\n\ndata: c\n\n"
	want := 3
	// Every way of cutting the stream in two reads, and byte by byte.
	for cut := range len(stream) + 1 {
		var s eventSplitter
		if got := s.count([]byte(stream[:cut])) + s.count([]byte(stream[cut:])); got != want {
			t.Errorf("cut at %d: %d events, want %d", cut, got, want)
		}
	}
	var s eventSplitter
	got := 0
	for i := range len(stream) {
		got += s.count([]byte{stream[i]})
	}
	if got != want {
		t.Errorf("byte by byte: %d events, want %d", got, want)
	}
	if n := new(eventSplitter).count([]byte(strings.Repeat("\n", 5))); n != 2 {
		t.Errorf("five newlines: %d events, want 2", n)
	}
}

func TestPacerSpacesOps(t *testing.T) {
	c := &clock{start: time.Unix(100, 0)}
	p := newPacer(&Config{Rate: 1000, Conns: 10}, c, 5)
	// 10 connections sharing 1000/s: each sends every 10ms, worker 5
	// offset by half an interval.
	if p.interval != 10*time.Millisecond || !p.next.Equal(c.start.Add(5*time.Millisecond)) {
		t.Errorf("interval %v next %v", p.interval, p.next.Sub(c.start))
	}
	if newPacer(&Config{Conns: 10}, c, 0) != nil {
		t.Error("pacer without a rate")
	}
}
