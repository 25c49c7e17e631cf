package h2

import (
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// gRPC over HTTP/2 (github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
// grpc-go is a test dependency only; the few rules the front end needs are
// written here from the spec, each cited.

// isGRPC reports a gRPC request: "Content-Type → application/grpc
// [("+proto" / "+json" / {custom})]".
func isGRPC(req *http.Request) bool {
	ct := req.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc") &&
		(len(ct) == len("application/grpc") || ct[len("application/grpc")] == '+' || ct[len("application/grpc")] == ';')
}

// grpcTimeout parses grpc-timeout: "TimeoutValue TimeoutUnit", at most 8
// digits, unit H, M, S, m (milli), u (micro) or n (nano).
func grpcTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// gRPC status codes Agimo answers with (google.golang.org/grpc/codes).
const (
	codeOK                = 0
	codeDeadlineExceeded  = 4
	codeResourceExhausted = 8
	codeUnimplemented     = 12
	codeInternal          = 13
	codeUnavailable       = 14
)

// grpcCode maps the HTTP status Agimo would answer to the gRPC status a
// client should see: UNIMPLEMENTED for no route (gRPC's HTTP-to-gRPC
// status mapping maps 404 to it, and Gateway API asks it of a gRPC request
// no route accepts), DEADLINE_EXCEEDED for an
// upstream that stayed silent, RESOURCE_EXHAUSTED for a body over
// max_request_body, INTERNAL for a malformed request, UNAVAILABLE for
// the rest (a cold service, a full park, shutdown, a failed upstream):
// the code gRPC clients retry.
func grpcCode(status int) int {
	switch status {
	case http.StatusNotFound:
		return codeUnimplemented
	case http.StatusGatewayTimeout:
		return codeDeadlineExceeded
	case http.StatusRequestEntityTooLarge:
		return codeResourceExhausted
	case http.StatusBadRequest:
		return codeInternal
	}
	return codeUnavailable
}

// grpcRefuse answers a gRPC request with a Trailers-Only response: HTTP
// 200 and one HEADERS frame, ending the stream, with grpc-status and
// grpc-message. x/net/http2 sends the header block with END_STREAM when
// the handler returns without a body, which is that form.
func grpcRefuse(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(grpcCode(status)))
	h.Set("Grpc-Message", grpcMessage(msg))
	w.WriteHeader(http.StatusOK)
}

// grpcProbe answers a health check of a cold service: the standard
// grpc.health.v1.Health/Check gets SERVING, as a cold HTTP probe gets
// 200 (the service is fine, only asleep); another method UNAVAILABLE.
func grpcProbe(w http.ResponseWriter, path, host string) {
	if path != "/grpc.health.v1.Health/Check" {
		grpcRefuse(w, http.StatusServiceUnavailable, host+" is scaled to zero")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Trailer", "Grpc-Status")
	w.WriteHeader(http.StatusOK)
	// A Length-Prefixed-Message: uncompressed, 2 bytes, the protobuf
	// HealthCheckResponse{status: SERVING} (field 1, varint 1).
	msg := []byte{0, 0, 0, 0, 0, 0x08, 0x01}
	binary.BigEndian.PutUint32(msg[1:5], 2)
	_, _ = w.Write(msg)
	h.Set("Grpc-Status", strconv.Itoa(codeOK))
}

// grpcMessage percent-encodes msg as grpc-message requires: bytes
// outside 0x20–0x7E, and '%', as %XX.
func grpcMessage(msg string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
