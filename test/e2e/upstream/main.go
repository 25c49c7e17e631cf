//go:build e2e

// Command upstream is the e2e suite's stand-in for a workload's pod: an HTTP server that
// says which pod answered, and a WebSocket echo. The suite runs it inside a network
// namespace (hack/netns.sh) so that it has a non-loopback IP to put in an EndpointSlice.
//
// Usage: upstream -listen 10.213.1.2:8080 -name web-0
//
//	ANY /anything  -> 200 "pod=<name> host=<Host> path=<path> xfp=<X-Forwarded-Proto>", then
//	                  a line "hdr <Name>=<values joined by ,>" per request header, by name
//	                  (what a proxy's header edits left for the pod)
//	GET /ws        -> WebSocket; every message is echoed back prefixed with "<name>: "
//
// With -cert and -key it serves HTTPS instead, with that certificate (a pod that keeps its
// own certificate behind tls_passthrough).
//
// Client mode, for hack/demo.sh (curl has no WebSocket client on Debian 12):
//
//	upstream -dial 127.0.0.1:8080 -host hello.demo -send 'hi' -send 'again'
//
// opens ws://<host>/ws over a TCP connection to -dial, sends each message, prints replies.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

type messages []string

func (m *messages) String() string     { return fmt.Sprint(*m) }
func (m *messages) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	name := flag.String("name", "upstream", "pod name reported in every answer")
	dial := flag.String("dial", "", "client mode: TCP address to open a WebSocket through")
	host := flag.String("host", "", "client mode: Host of the WebSocket URL")
	certFile := flag.String("cert", "", "serve TLS with this PEM certificate (and -key)")
	keyFile := flag.String("key", "", "the PEM key of -cert")
	var send messages
	flag.Var(&send, "send", "client mode: a message to send (repeatable)")
	flag.Parse()
	if *dial != "" {
		if err := client(*dial, *host, send); err != nil {
			log.Fatal(err)
		}
		return
	}

	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade already answered with an error status
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, append([]byte(*name+": "), msg...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Pod", *name)
		fmt.Fprintf(w, "pod=%s host=%s path=%s xfp=%s\n", *name, r.Host, r.URL.Path, r.Header.Get("X-Forwarded-Proto"))
		for _, k := range slices.Sorted(maps.Keys(r.Header)) {
			fmt.Fprintf(w, "hdr %s=%s\n", k, strings.Join(r.Header[k], ","))
		}
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("upstream %s listening on %s", *name, *listen)
	if *certFile != "" {
		log.Fatal(srv.ListenAndServeTLS(*certFile, *keyFile))
	}
	log.Fatal(srv.ListenAndServe())
}

// client opens ws://host/ws through addr, sends each message and prints each reply.
func client(addr, host string, send []string) error {
	d := websocket.Dialer{
		HandshakeTimeout: 60 * time.Second,
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
	}
	c, _, err := d.Dial("ws://"+host+"/ws", nil)
	if err != nil {
		return fmt.Errorf("websocket to %s via %s: %w", host, addr, err)
	}
	defer c.Close()
	for _, m := range send {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, reply, err := c.ReadMessage()
		if err != nil {
			return err
		}
		fmt.Printf("sent %q, got %q\n", m, reply)
	}
	return c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
}
