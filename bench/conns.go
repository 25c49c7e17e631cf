package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// srcPool hands out loopback source addresses for the suite's own client
// sockets. One source IP has about 28,000 ephemeral ports towards one
// listener (net.ipv4.ip_local_port_range), fewer with the TIME_WAIT left
// by earlier repetitions: 50,000 parked requests need several, so each
// address serves perIP connections and then the next of 127.0.0.2..254
// takes over.
type srcPool struct {
	mu    sync.Mutex // guards next, used
	next  byte
	used  int
	perIP int
}

func newSrcPool(perIP int) *srcPool { return &srcPool{next: 2, perIP: perIP} }

func (p *srcPool) get() net.IP {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used >= p.perIP {
		p.used = 0
		p.next++
		if p.next == 255 {
			p.next = 2
		}
	}
	p.used++
	return net.IPv4(127, 0, 0, p.next)
}

// clientSrc is shared by every scenario of the run, so that connections
// of one repetition do not meet the TIME_WAIT of the one before.
var clientSrc = newSrcPool(10000)

// dialLoopback connects to addr from the next source address. The
// IP_BIND_ADDRESS_NO_PORT option defers the port choice to connect(),
// which may then reuse a port that another destination already has.
func dialLoopback(ctx context.Context, addr string) (net.Conn, error) {
	return dialLoopbackWithin(ctx, addr, 10*time.Second)
}

func dialLoopbackWithin(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   timeout,
		LocalAddr: &net.TCPAddr{IP: clientSrc.get()},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	return d.DialContext(ctx, "tcp", addr)
}

// openMany opens n connections to addr and sends each the request req,
// with at most par dials at a time (a burst of 10,000 connects would
// overflow the listen backlog and stall on SYN retransmits). It stops at
// the first error, returning the connections opened so far.
func openMany(ctx context.Context, addr string, n, par int, req []byte) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var (
		mu       sync.Mutex // guards firstErr
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idx := make(chan int)
	for range min(par, n) {
		wg.Go(func() {
			for i := range idx {
				c, err := dialLoopback(ctx, addr)
				if err == nil && len(req) > 0 {
					if _, err = c.Write(req); err != nil {
						c.Close()
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d of %d: %w", i+1, n, err)
					}
					mu.Unlock()
					cancel()
					continue
				}
				conns[i] = c
			}
		})
	}
feed:
	for i := range n {
		select {
		case idx <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(idx)
	wg.Wait()
	var open []net.Conn
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	if firstErr == nil && ctx.Err() != nil && len(open) < n {
		firstErr = ctx.Err()
	}
	return open, firstErr
}

// openAtOnce is openMany without pacing: n clients, each its own
// goroutine, all released together to connect and send req, as a crowd
// arriving at once does. Connections the listen backlog drops at first
// are retried by the kernel (SYN retransmits), hence the long timeout.
func openAtOnce(ctx context.Context, addr string, n int, req []byte) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var ready, wg sync.WaitGroup
	ready.Add(n)
	for i := range n {
		wg.Go(func() {
			ready.Done()
			<-start
			c, err := dialLoopbackWithin(ctx, addr, time.Minute)
			if err == nil {
				if _, err = c.Write(req); err != nil {
					c.Close()
				}
			}
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = c
		})
	}
	ready.Wait()
	close(start)
	wg.Wait()
	var (
		open  []net.Conn
		bad   int
		first error
	)
	for i, c := range conns {
		if c != nil {
			open = append(open, c)
		} else if bad++; first == nil {
			first = errs[i]
		}
	}
	if bad > 0 {
		return open, fmt.Errorf("%d of %d clients failed, first: %w", bad, n, first)
	}
	return open, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// readResponse reads one HTTP response head and body from c.
func readResponse(c net.Conn, deadline time.Time) (int, error) {
	c.SetReadDeadline(deadline)
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var buf [512]byte
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			break
		}
	}
	return resp.StatusCode, nil
}

func getRequest(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
}

// wsHandshake is a WebSocket opening handshake (RFC 6455 §4.1) with a
// fixed key: the suite only counts 101s, it never checks the accept hash.
func wsHandshake(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
}
