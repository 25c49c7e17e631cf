package certs

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reload changes the set of sources: a dropped one leaves the pool and
// its metrics, an added Secret is served, one that stays is untouched.
func TestReload(t *testing.T) {
	p := newPool(t)
	c := p.ca.issue(t, "c.example.com")
	if _, err := p.cs.CoreV1().Secrets("apps").Create(context.Background(), tlsSecret("apps", "c-tls", c), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fileGauge := `agimo_tls_certificate_expiry_timestamp_seconds{source="file:` + p.dir + `/b.crt"}`
	if p.metric(fileGauge) == "" {
		t.Fatalf("%s missing before reload", fileGauge)
	}
	cfg := loadConf(t, service("a.example.com", `tls_secret = "a-tls"`)+service("c.example.com", `tls_secret = "c-tls"`))
	if err := p.st.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := p.waitOutcome(t, "secret:apps/c-tls", true); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sni  string
		want leaf
	}{
		{"a.example.com", p.a},
		{"c.example.com", c},
		{"b.example.com", p.a}, // its files are gone: the default
		{"z.example.com", p.a}, // so is the wildcard
	}
	for _, tt := range tests {
		if got := servedSerial(dialTLS(t, p.addr, tt.sni)); got != tt.want.serial {
			t.Errorf("after reload, SNI %q: got certificate %d; want %d", tt.sni, got, tt.want.serial)
		}
	}
	if v := p.metric(fileGauge); v != "" {
		t.Errorf("%s = %s after its source was dropped; want no series", fileGauge, v)
	}
	if err := p.st.Reload(loadConf(t, service("a.example.com"))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if p.st.Enabled() {
		t.Error("Enabled() = true with no certificate configured; want false")
	}
}

// A config without certificates needs no client and enables nothing.
func TestNoCertificates(t *testing.T) {
	cfg := loadConf(t, service("a.example.com"))
	st, err := New(cfg, nil, Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := st.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer st.Stop()
	if st.Enabled() {
		t.Error("Enabled() = true; want false")
	}
	cfg = loadConf(t, service("a.example.com", `tls_secret = "a-tls"`))
	if _, err := New(cfg, nil, Options{Log: zerolog.Nop()}); err == nil {
		t.Error("New with a Secret and no client succeeded; want an error")
	}
	if err := st.Reload(cfg); err == nil {
		t.Error("Reload with a Secret and no client succeeded; want an error")
	}
}

// Stop ends every goroutine the Store started (informers, file pollers),
// and Start after Stop fails.
func TestStopEndsGoroutines(t *testing.T) {
	p := newPool(t)
	if storeGoroutines() == "" {
		t.Fatal("no goroutine of the Store found while it runs: the check below would prove nothing")
	}
	p.st.Stop()
	p.st.Stop() // idempotent
	// A goroutine that has called wg.Done may still be exiting: wait for
	// the stacks to show none left, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := storeGoroutines()
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines started by the Store still running after Stop:\n%s", left)
		}
		runtime.Gosched()
	}
	if err := p.st.Start(context.Background()); err == nil {
		t.Error("Start after Stop succeeded; want an error")
	}
	if err := p.st.Reload(loadConf(t, service("a.example.com"))); err == nil {
		t.Error("Reload after Stop succeeded; want an error")
	}
	// The pool still answers from its last snapshot.
	if got := servedSerial(dialTLS(t, p.addr, "b.example.com")); got != p.b.serial {
		t.Errorf("after Stop: got certificate %d; want %d", got, p.b.serial)
	}
}

// storeGoroutines returns the stacks of goroutines running the Store's
// code (its watchers, started by sync.WaitGroup.Go), "" if none.
func storeGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/agimo/agimo/certs.(*Store)") && !strings.Contains(g, "certs.storeGoroutines") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
