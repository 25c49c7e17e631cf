package park

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WatchClose reports, by closing the returned channel, when the peer of c
// resets the connection. fasthttp cannot tell a handler that its client
// left (RequestCtx.Done fires only at server shutdown), and a parked
// request of a client that left must free its slot and its gauge (issue 2).
//
// A half-close (FIN) is not leaving: RFC 9112 §9.6 lets a client close its
// sending side once its request is sent, and the ready path serves such a
// client, so the request stays parked, as in the lot (lot.loop). TCP
// cannot tell it from a full close without writing, so a client that
// closed fully stays parked until release or timeout.
//
// It blocks one goroutine in RawConn.Read, which Go's edge-triggered
// netpoller wakes only on new input, a half-close or a reset: no polling.
// Pending input (an unread body, a pipelined request) is left in place:
// MSG_PEEK looks without consuming, and POLLHUP/POLLERR tell a reset
// apart from data and from a half-close. stop ends the watch and
// restores the connection for fasthttp.
func WatchClose(c net.Conn) (gone <-chan struct{}, stop func()) {
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
			// A reset leaves the socket closed (POLLHUP) with its error
			// (POLLERR), even while unread bytes are pending.
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, 0); err == nil && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
				close(g)
				return true
			}
			var b [1]byte
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err != nil && err != unix.EAGAIN && err != unix.EINTR {
				close(g) // a reset the poll above did not see yet
				return true
			}
			// Nothing, data, or a half-close: wait for the netpoller.
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
