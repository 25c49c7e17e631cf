package conf

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string // substring; "" for success
	}{
		// Go syntax.
		{"30s", 30 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"0", 0, ""},
		{"0s", 0, ""},
		{"  5s\t", 5 * time.Second, ""},
		{"9223372036854775807ns", math.MaxInt64, ""},
		// humantime forms of the Rust original.
		{"5 sec", 5 * time.Second, ""},
		{"5 secs", 5 * time.Second, ""},
		{"2min", 2 * time.Minute, ""},
		{"2 minutes", 2 * time.Minute, ""},
		{"1h 30m", 90 * time.Minute, ""},
		{"1hour 30min 15s", time.Hour + 30*time.Minute + 15*time.Second, ""},
		{"1 day", 24 * time.Hour, ""},
		{"2days", 48 * time.Hour, ""},
		{"100 ms", 100 * time.Millisecond, ""},
		{"100msec", 100 * time.Millisecond, ""},
		{"3 µs", 3 * time.Microsecond, ""},
		{"7 nsec", 7 * time.Nanosecond, ""},
		// Invalid.
		{"", 0, "empty duration"},
		{"   ", 0, "empty duration"},
		{"5", 0, `unknown unit ""`},
		{"5 parsecs", 0, `unknown unit "parsecs"`},
		{"s", 0, "invalid duration"},
		{"five seconds", 0, "invalid duration"},
		{"-5s", 0, "negative"},
		{"-5 sec", 0, "invalid duration"},
		{"1.5 hours", 0, "unknown unit"},
		{"5 s s", 0, "invalid duration"},
		{"1h\t30m", 0, "unknown unit"},
		{"5 SEC", 0, "unknown unit"},
		// Overflow.
		{"9223372036854775808ns", 0, "out of range"},
		{"99999999999999999999 s", 0, "out of range"},
		{"2562048h", 0, "invalid duration"},
		{"106751 days 23h", 0, "too long"},
		{"200000 days", 0, "too long"},
		{"4611686018427387904ns 4611686018427387904ns", 0, "too long"},
		{strings.Repeat("4611686018427387903 ns ", 3), 0, "too long"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseDuration(%q) = %v; want %v", tt.in, err, tt.want)
		case tt.wantErr == "" && got != tt.want:
			t.Errorf("ParseDuration(%q) = %v; want %v", tt.in, got, tt.want)
		case tt.wantErr != "" && err == nil:
			t.Errorf("ParseDuration(%q) = %v, nil; want error containing %q", tt.in, got, tt.wantErr)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("ParseDuration(%q) error = %q; want it to contain %q", tt.in, err, tt.wantErr)
		case err != nil && strings.TrimSpace(tt.in) != "" && !strings.Contains(err.Error(), strconv.Quote(tt.in)):
			t.Errorf("ParseDuration(%q) error = %q; want it to quote the input", tt.in, err)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1h 30m")); err != nil {
		t.Fatalf("UnmarshalText: %v", err)
	}
	if !d.Set || d.Duration != 90*time.Minute {
		t.Errorf("UnmarshalText(\"1h 30m\") = %+v; want {Duration:1h30m0s Set:true}", d)
	}
	b, err := d.MarshalText()
	if got, want := string(b), "1h30m0s"; err != nil || got != want {
		t.Errorf("MarshalText() = %q, %v; want %q, nil", got, err, want)
	}
	var bad Duration
	if err := bad.UnmarshalText([]byte("soon")); err == nil || bad.Set {
		t.Errorf("UnmarshalText(\"soon\") = %v, Set=%v; want an error and Set=false", err, bad.Set)
	}
}
