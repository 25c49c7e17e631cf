package tunnel

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpBytes returns the bytes c's socket has received and had acknowledged
// (TCP_INFO, Linux 4.1 and later), and whether it could tell.
func tcpBytes(c net.Conn) (uint64, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n uint64
	var ierr error
	err = rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if ierr == nil {
			n = info.Bytes_received + info.Bytes_acked
		}
	})
	if err != nil || ierr != nil {
		return 0, false
	}
	return n, true
}
