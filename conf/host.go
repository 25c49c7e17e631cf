package conf

// AppendHost appends the routing key of a Host header value (RFC 9110 §7.2)
// to dst and reports whether the value is a valid host. The key is the host
// in lower case, without a ":port" and without a trailing dot, so that
// "Example.COM.:8080" and "example.com" route alike (issue 2).
//
// It does not allocate when dst has room, because the proxy calls it for
// every request.
func AppendHost(dst, host []byte) ([]byte, bool) {
	if len(host) == 0 {
		return dst, false
	}
	name := host
	if host[0] == '[' {
		// IP-literal (RFC 3986 §3.2.2): "[" IPv6address "]" [ ":" port ].
		end := -1
		for i, c := range host {
			if c == ']' {
				end = i
				break
			}
		}
		if end < 2 || !validPort(host[end+1:]) {
			return dst, false
		}
		name = host[:end+1]
		for _, c := range name[1:end] {
			if !isHex(c) && c != ':' && c != '.' {
				return dst, false
			}
		}
	} else {
		for i, c := range host {
			if c == ':' {
				if !validPort(host[i:]) {
					return dst, false
				}
				name = host[:i]
				break
			}
		}
		if n := len(name); n > 0 && name[n-1] == '.' {
			name = name[:n-1]
		}
		// Only one trailing dot goes: "." and "a.." are not hosts.
		if n := len(name); n == 0 || n > 253 || name[n-1] == '.' {
			return dst, false
		}
		for _, c := range name {
			if !isRegNameChar(c) {
				return dst, false
			}
		}
	}
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// NormalizeHost is AppendHost for strings.
func NormalizeHost(host string) (string, bool) {
	var buf [64]byte
	b, ok := AppendHost(buf[:0], []byte(host))
	return string(b), ok
}

// validPort accepts "" or ":" followed by 1–5 digits. An empty port after the
// colon is allowed by RFC 3986 (port = *DIGIT) and is sent by some clients.
func validPort(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if p[0] != ':' || len(p) > 6 {
		return false
	}
	for _, c := range p[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// isRegNameChar allows letters, digits, '-', '.' and '_'. Percent-encoding and the other sub-delims that
// RFC 3986 permits in a reg-name never occur in DNS names and would only
// help an attacker craft two spellings of one route, so they are rejected.
func isRegNameChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '-' || c == '.' || c == '_':
		return true
	}
	return false
}
