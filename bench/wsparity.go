package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/websocket"
)

// The WebSocket counterpart of parity.go: the Go copy-loop relay must
// forward an upgrade request as Agimo does, or the comparison measures
// less work. Before measuring, one handshake goes through each to the web
// upstream's /ws-headers, which answers the upgrade request's header
// fields as its first message; the layout fails unless agimo and the
// relay delivered the same. nginx's differences, if any, become a note:
// nginx writes "Connection: upgrade" in lower case and forwards fields
// named in Connection (parity.go), which no setting changes.

// wsParityRequest is parityRequest's fields in an opening handshake
// (RFC 6455 §4.1).
const wsParityRequest = "GET /ws-headers HTTP/1.1\r\n" +
	"Host: " + hostWeb + "\r\n" +
	"User-Agent: agimo-bench-parity\r\n" +
	"X-Custom: kept\r\n" +
	"X-Forwarded-For: 192.0.2.1\r\n" +
	"X-Forwarded-Host: spoofed.example\r\n" +
	"X_Underscore: dropped\r\n" +
	"Connection: Upgrade\r\n" +
	"Upgrade: websocket\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"\r\n"

// wsHeaders completes the handshake and sends the request's header
// fields, as echoHeaders lists them, in one text message.
func wsHeaders(w http.ResponseWriter, r *http.Request) {
	lines := []string{"Host: " + r.Host}
	for k, vs := range r.Header {
		for _, v := range vs {
			lines = append(lines, k+": "+v)
		}
	}
	slices.Sort(lines)
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	c.WriteMessage(websocket.TextMessage, []byte(strings.Join(lines, "\n")))
}

// upgradeHeaders sends wsParityRequest through the proxy at addr and
// returns the header fields the upstream received.
func upgradeHeaders(addr string) ([]string, error) {
	c, br, resp, err := sendRaw(addr, wsParityRequest)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("handshake answered %s", resp.Status)
	}
	msg, err := readServerFrame(br)
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	return strings.Split(string(msg), "\n"), nil
}

// readServerFrame reads one unmasked, unfragmented frame's payload (RFC
// 6455 §5.2): what a server sends.
func readServerFrame(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		return nil, errors.New("fragmented or masked frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return p, err
}

// checkUpgradeParity fails unless the relay forwards the same upgrade
// request as agimo; nginx's differences (nginxAddr may be "") are returned
// as a note.
func checkUpgradeParity(agimoAddr, relayAddr, nginxAddr string) (note string, err error) {
	a, err := upgradeHeaders(agimoAddr)
	if err != nil {
		return "", fmt.Errorf("upgrade parity: through agimo: %w", err)
	}
	r, err := upgradeHeaders(relayAddr)
	if err != nil {
		return "", fmt.Errorf("upgrade parity: through the go-relay: %w", err)
	}
	if !slices.Equal(sameIDs(a), sameIDs(r)) {
		return "", fmt.Errorf("upgrade parity: agimo and the go-relay forward different headers, so the comparison would not be fair\n"+
			"agimo:\n  %s\ngo-relay:\n  %s", strings.Join(a, "\n  "), strings.Join(r, "\n  "))
	}
	if nginxAddr == "" {
		return "", nil
	}
	n, err := upgradeHeaders(nginxAddr)
	if err != nil {
		return "", fmt.Errorf("upgrade parity: through nginx: %w", err)
	}
	if d := lineDiff(sameIDs(a), sameIDs(n)); d != "" {
		return "WebSocket handshake: nginx forwards the upgrade request differently from agimo (" + d + ")", nil
	}
	return "", nil
}

// lineDiff says which lines only a and only b have; "" if none.
func lineDiff(a, b []string) string {
	var onlyA, onlyB []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			onlyA = append(onlyA, "`"+l+"`")
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			onlyB = append(onlyB, "`"+l+"`")
		}
	}
	if len(onlyA) == 0 && len(onlyB) == 0 {
		return ""
	}
	return fmt.Sprintf("agimo only: %s; nginx only: %s", orDash(strings.Join(onlyA, ", ")), orDash(strings.Join(onlyB, ", ")))
}
