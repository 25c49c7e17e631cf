package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// A comparison is fair only if both proxies do the same work: nginx must
// forward the headers Agimo forwards (nginx's proxy_set_header is not
// inherited into a block that sets any, so a location with one of its own
// silently dropped the http-level Host and X-Forwarded-* settings: issue
// 13). Before measuring, one request goes through each proxy to the
// upstream's /echo-headers, and the layout fails unless both delivered the
// same header fields.

// parityRequest carries what a client might send: a custom field, a
// spoofed X-Forwarded-For and -Host (both proxies must replace them) and
// an underscore name (both drop it). Not a field named in Connection:
// nginx forwards those (it drops only the standard hop-by-hop fields),
// where Agimo drops them as RFC 9110 §7.6.1 asks; no nginx setting does
// that in general, so the request does not ask for it.
const parityRequest = "GET /echo-headers HTTP/1.1\r\n" +
	"Host: " + hostHTTP + "\r\n" +
	"User-Agent: agimo-bench-parity\r\n" +
	"Accept: */*\r\n" +
	"X-Custom: kept\r\n" +
	"X-Forwarded-For: 192.0.2.1\r\n" +
	"X-Forwarded-Host: spoofed.example\r\n" +
	"X_Underscore: dropped\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n"

// echoHeaders answers the request's header fields, one "name: value" line
// each, names in canonical case and lines sorted.
func echoHeaders(ctx *fasthttp.RequestCtx) {
	var lines []string
	for k, v := range ctx.Request.Header.All() {
		lines = append(lines, http.CanonicalHeaderKey(string(k))+": "+string(v))
	}
	slices.Sort(lines)
	ctx.SetBodyString(strings.Join(lines, "\n"))
}

// sameIDs replaces the value of each X-Request-Id line: both proxies
// generate one per request, which must be there, whatever its value.
func sameIDs(lines []string) []string {
	out := slices.Clone(lines)
	for i, l := range out {
		if strings.HasPrefix(l, "X-Request-Id: ") && len(l) > len("X-Request-Id: ") {
			out[i] = "X-Request-Id: (generated)"
		}
	}
	return out
}

// forwardedHeaders sends parityRequest through the proxy at addr and
// returns the header fields the upstream received.
func forwardedHeaders(addr string) ([]string, error) {
	c, _, resp, err := sendRaw(addr, parityRequest)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return strings.Split(string(b), "\n"), nil
}

// sendRaw writes req as it is to a new connection to addr and reads the
// response head; the caller closes the connection.
func sendRaw(addr, req string) (net.Conn, *bufio.Reader, *http.Response, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err = io.WriteString(c, req); err == nil {
		var resp *http.Response
		if resp, err = http.ReadResponse(br, nil); err == nil {
			return c, br, resp, nil
		}
	}
	c.Close()
	return nil, nil, nil, err
}

// checkParity fails unless Agimo and nginx forward the same header fields.
func checkParity(agimoAddr, nginxAddr string) error {
	a, err := forwardedHeaders(agimoAddr)
	if err != nil {
		return fmt.Errorf("parity: through agimo: %w", err)
	}
	n, err := forwardedHeaders(nginxAddr)
	if err != nil {
		return fmt.Errorf("parity: through nginx: %w", err)
	}
	if !slices.Equal(sameIDs(a), sameIDs(n)) {
		return fmt.Errorf("parity: the proxies forward different headers, so the comparison would not be fair\nagimo:\n  %s\nnginx:\n  %s",
			strings.Join(a, "\n  "), strings.Join(n, "\n  "))
	}
	return nil
}
