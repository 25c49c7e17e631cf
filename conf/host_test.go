package conf

import (
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) // 253
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		// Valid: lower-cased, without port and trailing dot.
		{"example.com", "example.com", true},
		{"Example.COM", "example.com", true},
		{"example.com:8080", "example.com", true},
		{"example.com:", "example.com", true}, // RFC 3986: port = *DIGIT
		{"example.com.", "example.com", true},
		{"EXAMPLE.com.:443", "example.com", true},
		{"localhost", "localhost", true},
		{"my_host-1.svc", "my_host-1.svc", true},
		{"10.0.0.1:80", "10.0.0.1", true},
		{"[::1]", "[::1]", true},
		{"[::1]:8080", "[::1]", true},
		{"[2001:DB8::A]:443", "[2001:db8::a]", true},
		{"[::ffff:10.0.0.1]", "[::ffff:10.0.0.1]", true},
		{long, long, true},
		{long + ".", long, true},
		{long + ".:80", long, true},

		// Invalid.
		{"", "", false},
		{":80", "", false},
		{":", "", false},
		{".", "", false},
		{"..", "", false},
		{"a..", "", false},
		{".:80", "", false},
		{"example.com:8o", "", false},
		{"example.com:80:80", "", false},
		{"example.com:123456", "", false},
		{"example.com: 80", "", false},
		{"[::1", "", false},
		{"[]", "", false},
		{"[::1]80", "", false},
		{"[::1]:x", "", false},
		{"[::g]", "", false},
		{"[fe80::1%25eth0]", "", false},
		{"::1", "", false},
		{"a b", "", false},
		{" example.com", "", false},
		{"example.com ", "", false},
		{"exa%6Dple.com", "", false},
		{"user@example.com", "", false},
		{"user:pw@example.com", "", false},
		{"http://example.com", "", false},
		{"example.com/path", "", false},
		{"example.com?q", "", false},
		{"ex\x00ample.com", "", false},
		{"exämple.com", "", false},
		{long + "e", "", false},
		{long + "e.", "", false},
	}
	for _, tt := range tests {
		got, ok := NormalizeHost(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestAppendHost(t *testing.T) {
	tests := []struct {
		dst, in string
		want    string
		wantOK  bool
	}{
		{"", "Example.com:80", "example.com", true},
		{"key:", "Example.com.", "key:example.com", true},
		{"key:", "bad host", "key:", false},
		{"key:", "", "key:", false},
	}
	for _, tt := range tests {
		got, ok := AppendHost([]byte(tt.dst), []byte(tt.in))
		if string(got) != tt.want || ok != tt.wantOK {
			t.Errorf("AppendHost(%q, %q) = %q, %v; want %q, %v", tt.dst, tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestAppendHostDoesNotModifyInput: the input is a request header, which
// must not be lower-cased in place.
func TestAppendHostDoesNotModifyInput(t *testing.T) {
	in := []byte("Example.COM:80")
	if _, ok := AppendHost(nil, in); !ok {
		t.Fatal("AppendHost: not ok")
	}
	if got, want := string(in), "Example.COM:80"; got != want {
		t.Errorf("input after AppendHost = %q; want %q", got, want)
	}
}

func TestAppendHostAllocs(t *testing.T) {
	for _, in := range []string{"Example.COM.:8080", "[2001:DB8::1]:443", "bad host"} {
		host := []byte(in)
		buf := make([]byte, 0, 256)
		allocs := testing.AllocsPerRun(100, func() {
			buf, _ = AppendHost(buf[:0], host)
		})
		if allocs != 0 {
			t.Errorf("AppendHost(%q) with room in dst: %v allocs per run; want 0", in, allocs)
		}
	}
}

func BenchmarkAppendHost(b *testing.B) {
	for _, in := range []string{"app.example.com", "App.Example.COM.:8080", "[2001:db8::1]:443"} {
		b.Run(in, func(b *testing.B) {
			host := []byte(in)
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			b.SetBytes(int64(len(host)))
			for b.Loop() {
				buf, _ = AppendHost(buf[:0], host)
			}
		})
	}
}
