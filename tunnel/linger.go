package tunnel

import (
	"io"
	"net"
	"time"
)

// Lingering close, as nginx's lingering_close: after the last response on
// a connection taken over (an upgrade the upstream refused, an error),
// half-close it and read the client's further bytes, discarding them,
// until the client closes or a limit is hit. Closing with unread bytes
// would send a reset that can destroy the response before the client has
// read it.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 256 << 10
)

// Linger half-closes c and discards what the client still sends, for at
// most lingerTime or lingerBytes. The caller closes c afterwards.
func Linger(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	if c.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	io.CopyN(io.Discard, c, lingerBytes)
}
