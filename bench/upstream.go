package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"
)

// The upstream runs in a child process of its own (`bench upstream`), so
// it can be pinned apart from the proxy and its garbage collector does not
// share a heap with the load generator's. The suite opens its listeners
// and passes them as file descriptors 3 (HTTP: fasthttp, fixed bodies), 4
// (web: net/http with WebSocket echo and SSE) and 5 (gRPC over h2c:
// grpc-go's test service, grpcapp.go), so there is no port race.

const (
	smallBody = "Hello, World!" // 13 bytes
	// sseEventsDefault is the number of events per stream when the
	// request does not say (?n=).
	sseEventsDefault = 100
)

var body4k = bytes.Repeat([]byte("0123456789abcdef"), 256)

// upstreamHandler serves the HTTP scenarios: GET /small, GET /4k, and
// POST /upload, which reads the whole request body and answers its size;
// and GET /echo-headers for the suite's parity check (parity.go).
func upstreamHandler(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/small":
		ctx.SetBodyString(smallBody)
	case "/4k":
		ctx.SetBody(body4k)
	case "/upload":
		ctx.SetBodyString(strconv.Itoa(len(ctx.PostBody())))
	case "/echo-headers":
		echoHeaders(ctx) // parity.go
	default:
		ctx.Error("not found", fasthttp.StatusNotFound)
		return
	}
	ctx.SetContentType("text/plain")
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// wsEcho sends every message back as it came, streaming it through, so a
// large message is not held whole.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	defer c.Close()
	for {
		typ, rd, err := c.NextReader()
		if err != nil {
			return
		}
		wr, err := c.NextWriter(typ)
		if err != nil {
			return
		}
		if _, err := io.Copy(wr, rd); err != nil {
			return
		}
		if err := wr.Close(); err != nil {
			return
		}
	}
}

// sse streams ?n= events as fast as the connection takes them, flushing
// each, then ends the response. Each event carries its send time (Unix
// nanoseconds) so a client on the same machine could time delivery.
func sse(w http.ResponseWriter, r *http.Request) {
	n := sseEventsDefault
	if v, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && v > 0 {
		n = v
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	buf := make([]byte, 0, 64)
	for i := range n {
		buf = append(buf[:0], "id: "...)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, "\ndata: "...)
		buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
		buf = append(buf, "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func webMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", wsEcho)
	mux.HandleFunc("/sse", sse)
	mux.HandleFunc("/ws-headers", wsHeaders) // wsparity.go
	return mux
}

// runUpstream is `bench upstream`: serve on the inherited listeners until
// SIGTERM or SIGINT.
func runUpstream() error {
	httpLn, err := net.FileListener(os.NewFile(3, "http-listener"))
	if err != nil {
		return fmt.Errorf("upstream: http listener (fd 3): %w", err)
	}
	webLn, err := net.FileListener(os.NewFile(4, "web-listener"))
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("upstream: web listener (fd 4): %w", err)
	}
	grpcLn, err := net.FileListener(os.NewFile(5, "grpc-listener"))
	if err != nil {
		httpLn.Close()
		webLn.Close()
		return fmt.Errorf("upstream: grpc listener (fd 5): %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	gs := newGRPCUpstream()

	fs := &fasthttp.Server{
		Handler:               upstreamHandler,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		ReadBufferSize:        8 << 10,
		MaxRequestBodySize:    16 << 20,
		CloseOnShutdown:       true,
	}
	web := &http.Server{Handler: webMux(), ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := fs.Serve(httpLn); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("upstream http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := web.Serve(webLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("upstream web: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := gs.Serve(grpcLn); err != nil {
			return fmt.Errorf("upstream grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		gs.Stop()
		// Open WebSockets and streams are hijacked or long-lived: close,
		// not drain; the suite stops the upstream only when done with it.
		fs.Shutdown()
		web.Close()
		return nil
	})
	return g.Wait()
}

// upstream is the running child process and where it listens.
type upstream struct {
	p                   *proc
	httpAddr, web, grpc string
}

// startUpstream opens the three listeners on 127.0.0.1 and starts `bench
// upstream` on them, pinned to cpus if set.
func startUpstream(self, logDir, cpus string) (*upstream, error) {
	var files []*os.File
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("upstream listener: %w", err)
		}
		f, err := ln.(*net.TCPListener).File()
		ln.Close() // the dup in f keeps the socket listening
		if err != nil {
			return nil, fmt.Errorf("upstream listener: %w", err)
		}
		defer f.Close()
		files = append(files, f)
		addrs = append(addrs, ln.Addr().String())
	}
	p, err := startProc("upstream", logDir, cpus, files, self, "upstream")
	if err != nil {
		return nil, err
	}
	u := &upstream{p: p, httpAddr: addrs[0], web: addrs[1], grpc: addrs[2]}
	for _, a := range addrs {
		if err := p.waitDial(a, 10*time.Second); err != nil {
			p.stop(syscall.SIGTERM, 5*time.Second)
			return nil, err
		}
	}
	return u, nil
}

func (u *upstream) stop() { u.p.stop(syscall.SIGTERM, 5*time.Second) }
