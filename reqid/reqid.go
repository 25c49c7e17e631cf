// Package reqid gives every request an X-Request-Id (issue 14): the
// client's, if it sent a well-formed one and the config trusts it, else
// one generated here. Generating is cheap on purpose, as it runs for most
// requests: a random prefix drawn once per process and an atomic counter,
// both hex, unique across replicas and restarts without a read of
// crypto/rand per request.
package reqid

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// Header is the field the ID travels in, both ways.
const Header = "X-Request-Id"

// MaxLen bounds a client's ID; a longer one is replaced.
const MaxLen = 128

var (
	prefix  [16]byte // hex of 8 random bytes, drawn at start
	counter atomic.Uint64
)

func init() {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on Linux (crypto/rand's contract)
	hex.Encode(prefix[:], b[:])
}

// Valid reports whether id is a well-formed client ID: 1 to MaxLen
// visible ASCII characters, none a space or a comma (so that it survives
// being listed in a field and logged as one token).
func Valid(id []byte) bool {
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for _, c := range id {
		if c <= ' ' || c > '~' || c == ',' {
			return false
		}
	}
	return true
}

// Append appends a new ID to dst: 16 hex digits of the process's prefix,
// then the counter's 16, 32 in all.
func Append(dst []byte) []byte {
	n := counter.Add(1)
	dst = append(dst, prefix[:]...)
	var b [16]byte
	h := strconv.AppendUint(b[:0], n, 16)
	for range 16 - len(h) {
		dst = append(dst, '0')
	}
	return append(dst, h...)
}

// Choose appends to dst the ID a request gets given the one the client
// sent (nil if none): kept if valid and trusted, else a new one. It
// reports whether the client's was kept.
func Choose(dst, got []byte, trust bool) ([]byte, bool) {
	if trust && Valid(got) {
		return append(dst, got...), true
	}
	return Append(dst), false
}
