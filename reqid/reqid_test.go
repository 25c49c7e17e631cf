package reqid

import "testing"

func TestValid(t *testing.T) {
	long := make([]byte, MaxLen+1)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		id   string
		want bool
	}{
		{"abc-123", true},
		{"a", true},
		{string(long[:MaxLen]), true},
		{string(long), false},
		{"", false},
		{"has space", false},
		{"has,comma", false},
		{"tab\there", false},
		{"caf\xc3\xa9", false},
		{"del\x7f", false},
	}
	for _, tt := range tests {
		if got := Valid([]byte(tt.id)); got != tt.want {
			t.Errorf("Valid(%q) = %v; want %v", tt.id, got, tt.want)
		}
	}
}

func TestAppendUnique(t *testing.T) {
	a, b := string(Append(nil)), string(Append(nil))
	if a == b {
		t.Errorf("two IDs are both %q; want them different", a)
	}
	if len(a) != 32 || !Valid([]byte(a)) {
		t.Errorf("ID %q: got length %d; want 32 valid characters", a, len(a))
	}
	if a[:16] != b[:16] {
		t.Errorf("prefixes %q and %q; want the process's one", a[:16], b[:16])
	}
}

func TestChoose(t *testing.T) {
	tests := []struct {
		name     string
		got      string
		trust    bool
		wantKept bool
	}{
		{"trusted valid", "req-1", true, true},
		{"replaced valid", "req-1", false, false},
		{"trusted invalid", "a b", true, false},
		{"none", "", true, false},
	}
	for _, tt := range tests {
		id, kept := Choose(nil, []byte(tt.got), tt.trust)
		if kept != tt.wantKept || (kept && string(id) != tt.got) || !Valid(id) {
			t.Errorf("%s: Choose = %q, %v; want kept %v", tt.name, id, kept, tt.wantKept)
		}
	}
}
