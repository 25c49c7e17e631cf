package route

import "bytes"

// Authority returns the host a request is for, from its target as sent
// and its Host field: the authority of an absolute-form target, which
// wins over Host (RFC 9112 §3.2.2), else host. It reports false for a
// target with userinfo, which RFC 9110 §4.2.4 says to treat as an error.
// An HTTP/2 request passes its :authority as host and its :path as uri.
func Authority(uri, host []byte) ([]byte, bool) {
	if !IsAbsoluteForm(uri) {
		return host, true
	}
	_, rest, _ := bytes.Cut(uri, []byte("://"))
	if end := bytes.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	if bytes.IndexByte(rest, '@') >= 0 {
		return nil, false
	}
	return rest, true
}

// Path returns the path of a request target as sent: for absolute-form,
// what follows the authority; in every form, what comes before the query.
// Nothing is decoded or normalised: these are the bytes the upstream will
// see.
func Path(uri []byte) []byte {
	if IsAbsoluteForm(uri) {
		_, uri, _ = bytes.Cut(uri, []byte("://"))
		end := bytes.IndexAny(uri, "/?#")
		if end < 0 {
			return nil
		}
		uri = uri[end:]
	}
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return uri
}

// IsAbsoluteForm reports whether a request target is "http://..." or
// "https://...", compared without regard to case.
func IsAbsoluteForm(uri []byte) bool {
	if len(uri) < 8 || uri[0] == '/' {
		return false
	}
	scheme, _, ok := bytes.Cut(uri, []byte("://"))
	return ok && (bytes.EqualFold(scheme, []byte("http")) || bytes.EqualFold(scheme, []byte("https")))
}
