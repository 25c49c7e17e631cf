package proxy

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/agimo/agimo/watch"
)

var (
	errParkTimeout = errors.New("service not ready before timeout")
	errClientGone  = errors.New("client closed the connection")
	errStopping    = errors.New("proxy is shutting down")
	errParkFull    = errors.New("too many parked requests")
)

// park waits until r's service is ready, the deadline passes, the client
// leaves, or the proxy shuts down. It wakes on the service's broadcast
// channel, so every parked request is released by the same event that
// flipped readiness, with no polling (issue 2).
func (p *Proxy) park(ctx *fasthttp.RequestCtx, r *route, deadline time.Time) (*watch.State, error) {
	if r.parked.Add(1) > r.maxParked {
		r.parked.Add(-1)
		return nil, errParkFull
	}
	defer r.parked.Add(-1)
	p.beginCold(r)
	start := time.Now()
	r.m.parked.Inc()
	defer r.m.parked.Dec()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	gone, stopWatch := watchClose(ctx.Conn())
	defer stopWatch()

	st := r.ready.State()
	for !st.Ready {
		select {
		case <-st.Changed():
			st = r.ready.State()
		case <-timer.C:
			return nil, errParkTimeout
		case <-gone:
			return nil, errClientGone
		case <-p.stopping:
			return nil, errStopping
		}
	}
	waited := time.Since(start)
	r.m.parkTime.Update(waited.Seconds())
	r.cold.observe(waited)
	r.readyCold()
	return st, nil
}

// watchClose reports, by closing the returned channel, when the peer of c
// closes or resets the connection. fasthttp cannot tell a handler that its
// client left (RequestCtx.Done fires only at server shutdown), and a parked
// request of a client that left must free its slot and its gauge (issue 2).
//
// It blocks one goroutine in RawConn.Read, which Go's edge-triggered
// netpoller wakes only on new input or a hang-up: no polling. Pending
// input (an unread body, a pipelined request) is left in place: MSG_PEEK
// looks without consuming, and POLLRDHUP tells a half-close apart from
// data. stop ends the watch and restores the connection for fasthttp.
func watchClose(c net.Conn) (gone <-chan struct{}, stop func()) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, func() {}
	}
	g := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		rc.Read(func(fd uintptr) bool {
			var b [1]byte
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
				return false // nothing yet: wait for the netpoller
			case err != nil || n == 0:
				close(g) // reset, or orderly EOF with nothing pending
				return true
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
			if _, err := unix.Poll(fds, 0); err == nil && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
				close(g)
				return true
			}
			return false
		})
	}()
	return g, func() {
		// Wake the blocked Read with a past deadline, wait for it, then
		// lift the deadline so fasthttp can read the body.
		_ = c.SetReadDeadline(time.Unix(1, 0))
		<-exited
		_ = c.SetReadDeadline(time.Time{})
	}
}
