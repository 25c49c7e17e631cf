//go:build e2e

package e2e

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakePod is an upstream server in its own network namespace (hack/netns.sh), standing in
// for a workload's pod. Its IP is one the test created, so Agimo dials nothing else.
type fakePod struct {
	n    int    // netns number: agimo-pod-N
	IP   string // 10.213.N.2
	Name string // reported in every answer
	Port int32  // the container port (a Service's targetPort)

	cmd  *exec.Cmd
	logs syncBuffer
	once sync.Once
}

var podSeq atomic.Int32

// startPod creates a network namespace and runs the upstream server in it on :8080.
// It is stopped and deleted when the test ends.
func startPod(t *testing.T, name string) *fakePod {
	t.Helper()
	return startPodWith(t, name, env.upstream)
}

// startPodWith is startPod running bin, which takes -listen and -name as the upstream
// server does (test/grpcapp does too), and args after them.
func startPodWith(t *testing.T, name, bin string, args ...string) *fakePod {
	t.Helper()
	n := int(podSeq.Add(1))
	if n > 250 {
		t.Fatal("out of network namespaces (250 per run)")
	}
	sh := filepath.Join(env.root, "hack", "netns.sh")
	out, err := exec.Command(sh, "add", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("netns.sh add %d: %v\n%s", n, err, out)
	}
	p := &fakePod{n: n, IP: strings.TrimSpace(string(out)), Name: name, Port: 8080}
	addr := net.JoinHostPort(p.IP, "8080")
	// netns.sh exec ends in `exec ip netns exec ...`, which execs the server: cmd's PID
	// is the server's, so Kill below stops exactly it.
	p.cmd = exec.Command(sh, append([]string{"exec", strconv.Itoa(n), bin, "-listen", addr, "-name", name}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		netns("del", strconv.Itoa(n))
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake pod %s at %s never listened: %v\n%s", name, addr, err, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server (the namespace stays until the test ends).
func (p *fakePod) Stop() {
	p.once.Do(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
}
