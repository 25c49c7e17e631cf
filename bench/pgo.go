package main

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// cpuProfile is Go's CPU profile of agimo over one measured window,
// fetched from its --pprof-address (-pgo). Unlike perf, which samples
// the whole process from outside, it is the format the Go compiler reads
// for profile-guided optimisation.
type cpuProfile struct {
	path string
	wg   sync.WaitGroup
	err  error
}

// startCPUProfile asks agimo's pprof listener for a CPU profile of d
// (rounded up to whole seconds, the handler's unit) and writes it to
// path. A failure is reported by finish, not fatal.
func startCPUProfile(pprofAddr, path string, d time.Duration) *cpuProfile {
	p := &cpuProfile{path: path}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.err = err
		return p
	}
	secs := int(math.Ceil(d.Seconds()))
	c := &http.Client{Timeout: time.Duration(secs)*time.Second + 30*time.Second}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, secs)
	p.wg.Go(func() { p.err = fetch(c, url, path) })
	return p
}

// finish waits for the profile and returns its path, or the error.
func (p *cpuProfile) finish() (string, error) {
	p.wg.Wait()
	if p.err != nil {
		return "", p.err
	}
	return p.path, nil
}

// writePGO merges the CPU profiles of the run into out, the compiler's
// default.pgo (go tool pprof -proto sums the samples of profiles of the
// same binary).
func writePGO(profiles []string, out string) error {
	if len(profiles) == 0 {
		return fmt.Errorf("-pgo: no CPU profile of agimo was taken (no throughput run of agimo?)")
	}
	args := append([]string{"tool", "pprof", "-proto"}, profiles...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("-pgo: go tool pprof -proto: %v: %s", err, stderr.String())
	}
	if err := os.WriteFile(out, stdout.Bytes(), 0o644); err != nil {
		return fmt.Errorf("-pgo: %w", err)
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s (%d bytes) from %d CPU profiles of agimo\n", out, stdout.Len(), len(profiles))
	return nil
}
