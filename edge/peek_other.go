//go:build !linux

package edge

import "syscall"

// peekPreface cannot peek outside Linux (POLLRDHUP): sniff reads instead.
func peekPreface(syscall.RawConn) (bool, error) { return false, errNoPeek }
