//go:build linux

package edge

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// peekPreface waits until the bytes pending in rc's socket tell HTTP/2
// from HTTP/1.x (classify), without taking them from the socket. Each
// peek sees every byte received so far; while they are a strict prefix
// of the preface, it waits for the netpoller, which wakes it on new
// input, a half-close or the read deadline, without polling.
func peekPreface(rc syscall.RawConn) (h2 bool, err error) {
	var buf [len(preface)]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false
			case err == unix.ENOTSOCK || err == unix.EOPNOTSUPP:
				perr = errNoPeek
				return true
			case err != nil:
				perr = err
				return true
			case n == 0:
				perr = io.EOF
				return true
			}
			var decided bool
			if h2, decided = classify(buf[:n]); decided {
				return true
			}
			// A peek shows the bytes but not a half-close behind them,
			// and the netpoller has already reported it: ask, or the
			// client that sent part of the preface and closed would wait
			// for the deadline.
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
			if _, err := unix.Poll(fds, 0); err == nil && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
				perr = io.ErrUnexpectedEOF
				return true
			}
			return false
		}
	})
	if err == nil {
		err = perr
	}
	return h2, err
}
