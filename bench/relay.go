package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The Go copy-loop relay is a third WebSocket target beside nginx and
// direct: what net/http-based proxies do after a hijack (httputil's
// ReverseProxy, most Go ingress controllers): forward the upgrade request,
// pass the 101 back, then copy bytes with a read/write loop in each
// direction. Agimo splices instead (tunnel/); this target says what
// splicing buys over the plain loop. It runs in a child process of its own
// (`bench relay HOST=ADDR ...`, listener on fd 3), pinned like the proxy.

// relay routes upgrade requests by Host to an upstream address.
type relay struct {
	routes map[string]string // host (no port) → host:port
}

// parseRoutes reads HOST=ADDR arguments.
func parseRoutes(args []string) (map[string]string, error) {
	rt := map[string]string{}
	for _, a := range args {
		h, addr, ok := strings.Cut(a, "=")
		if !ok || h == "" || addr == "" {
			return nil, fmt.Errorf("relay: bad route %q: want HOST=ADDR", a)
		}
		rt[strings.ToLower(h)] = addr
	}
	if len(rt) == 0 {
		return nil, errors.New("relay: no routes")
	}
	return rt, nil
}

// hopByHop are the fields a proxy must not forward (RFC 9110 §7.6.1),
// besides those the Connection field names: Agimo's list (proxy/headers.go).
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Upgrade"}

// upgradeHead is the request head the relay sends upstream for r: the
// request line and fields as received, without hop-by-hop fields or
// names with an underscore, with
// the upgrade asked for again (RFC 9110 §7.8) and X-Forwarded-For, -Proto
// and -Host set as Agimo and the suite's nginx set them.
func upgradeHead(r *http.Request) []byte {
	h := r.Header.Clone()
	for _, f := range h.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, f := range hopByHop {
		h.Del(f)
	}
	// Names with an underscore are dropped, as Agimo and nginx do: a
	// CGI-style backend may read X_Forwarded_For as X-Forwarded-For.
	for k := range h {
		if strings.Contains(k, "_") {
			delete(h, k)
		}
	}
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", r.Header.Get("Upgrade"))
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	h.Set("X-Forwarded-For", ip)
	h.Set("X-Forwarded-Proto", "http")
	h.Set("X-Forwarded-Host", r.Host)
	// A request ID, as Agimo sets one (kept if the client sent it).
	if h.Get("X-Request-Id") == "" {
		h.Set("X-Request-Id", fmt.Sprintf("%016x%016x", relayIDPrefix, relayIDs.Add(1)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.Method, r.RequestURI, r.Host)
	h.Write(&b)
	b.WriteString("\r\n")
	return []byte(b.String())
}

// relayIDPrefix and relayIDs make request IDs as Agimo's: a per-process
// random prefix and a counter.
var (
	relayIDPrefix = rand.Uint64()
	relayIDs      atomic.Uint64
)

func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, f := range r.Header.Values("Connection") {
		for t := range strings.SplitSeq(f, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

func (rl *relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	addr, ok := rl.routes[host]
	if !ok {
		http.Error(w, "no route for host", http.StatusNotFound)
		return
	}
	if !isUpgrade(r) {
		http.Error(w, "the bench relay only tunnels upgrades", http.StatusNotImplemented)
		return
	}
	up, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	if _, err := up.Write(upgradeHead(r)); err != nil {
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	upR := bufio.NewReader(up)
	resp, err := http.ReadResponse(upR, r)
	if err != nil {
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// A refused upgrade is an ordinary response: pass it on.
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			if !isHopByHop(k) {
				w.Header()[k] = vs
			}
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer client.Close()
	// The 101 as received, its hop-by-hop fields but the upgrade dropped.
	h := resp.Header.Clone()
	for _, f := range hopByHop {
		h.Del(f)
	}
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", resp.Header.Get("Upgrade"))
	brw.Writer.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h.Write(brw.Writer)
	brw.Writer.WriteString("\r\n")
	if err := brw.Writer.Flush(); err != nil {
		return
	}
	copyLoop(client, buffered(brw.Reader, client), up, buffered(upR, up))
}

// buffered reads what br holds past the head, then straight from c, as
// httputil's ReverseProxy does after a hijack.
func buffered(br *bufio.Reader, c net.Conn) io.Reader {
	if n := br.Buffered(); n > 0 {
		return io.MultiReader(io.LimitReader(br, int64(n)), c)
	}
	return c
}

func isHopByHop(k string) bool {
	for _, f := range hopByHop {
		if strings.EqualFold(k, f) {
			return true
		}
	}
	return false
}

// copyLoop relays until either side ends, then closes both.
func copyLoop(client net.Conn, clientR io.Reader, up net.Conn, upR io.Reader) {
	var wg sync.WaitGroup
	wg.Go(func() {
		plainCopy(up, clientR)
		up.Close()
		client.Close()
	})
	plainCopy(client, upR)
	client.Close()
	up.Close()
	wg.Wait()
}

// plainCopy is io.Copy's loop with 32 KiB, as io.Copy allocates. Both ends
// are wrapped in types that expose Read or Write only: io.Copy between a
// *net.TCPConn and another would find ReadFrom and splice(2) on Linux, and
// a plain loop is what this target is for.
func plainCopy(dst io.Writer, src io.Reader) {
	io.CopyBuffer(onlyWriter{dst}, onlyReader{src}, make([]byte, 32<<10))
}

type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// runRelay is `bench relay HOST=ADDR...`: serve on the inherited listener
// (fd 3) until SIGTERM or SIGINT.
func runRelay(args []string) error {
	rt, err := parseRoutes(args)
	if err != nil {
		return err
	}
	ln, err := net.FileListener(os.NewFile(3, "relay-listener"))
	if err != nil {
		return fmt.Errorf("relay: listener (fd 3): %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &http.Server{Handler: &relay{routes: rt}, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close() // hijacked tunnels end with the process
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// relayProc is the running relay.
type relayProc struct {
	p    *proc
	addr string
}

// startRelay starts `bench relay` on a listener of its own, pinned to cpus
// if set, routing each host of routes to its address.
func startRelay(self, logDir, cpus string, routes map[string]string) (*relayProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay listener: %w", err)
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		return nil, fmt.Errorf("relay listener: %w", err)
	}
	defer f.Close()
	args := []string{"relay"}
	for h, a := range routes {
		args = append(args, h+"="+a)
	}
	p, err := startProc("relay", logDir, cpus, []*os.File{f}, self, args...)
	if err != nil {
		return nil, err
	}
	r := &relayProc{p: p, addr: ln.Addr().String()}
	if err := p.waitDial(r.addr, 10*time.Second); err != nil {
		p.stop(syscall.SIGTERM, 5*time.Second)
		return nil, err
	}
	return r, nil
}

func (r *relayProc) stop() { r.p.stop(syscall.SIGTERM, 5*time.Second) }
