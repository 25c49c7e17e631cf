package route

import "testing"

func TestHTTPSLocation(t *testing.T) {
	for _, tc := range []struct{ host, uri, want string }{
		{"app.test", "/x?y=1", "https://app.test/x?y=1"},
		{"app.test:8080", "/", "https://app.test/"},
		{"APP.test", "/a%2Fb", "https://APP.test/a%2Fb"},
		{"[::1]:8080", "/p", "https://[::1]/p"},
		{"app.test", "http://app.test:8080/p?q", "https://app.test/p?q"},
		{"app.test", "http://app.test", "https://app.test/"},
		{"app.test", "*", "https://app.test/*"},
	} {
		if got := string(HTTPSLocation([]byte(tc.host), []byte(tc.uri))); got != tc.want {
			t.Errorf("HTTPSLocation(%q, %q) = %q; want %q", tc.host, tc.uri, got, tc.want)
		}
	}
}
