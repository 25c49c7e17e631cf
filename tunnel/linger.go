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
	// lingerUploadBytes bounds what LingerUpload discards: far more than
	// a client sends in lingerTime over a real network, so the time is
	// what ends a linger, yet a bound on the work one client can cause.
	lingerUploadBytes = 128 << 20
)

// Linger half-closes c and discards what the client still sends, for at
// most lingerTime or lingerBytes. The caller closes c afterwards.
func Linger(c net.Conn) { linger(c, lingerBytes) }

// LingerUpload is Linger for a client that may be uploading a request
// body the server did not read: bounded by lingerTime, as nginx's
// lingering_time, and by lingerUploadBytes. Linger's small byte bound
// would end the linger within microseconds of a fast upload, and a client
// that gives up at its first failed write (Go's net/http may) would
// still see the reset before the response.
func LingerUpload(c net.Conn) { linger(c, lingerUploadBytes) }

func linger(c net.Conn, max int64) {
	if cw, ok := c.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	if c.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	io.CopyN(io.Discard, c, max)
}
