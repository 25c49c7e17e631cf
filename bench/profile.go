package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// profileDir is where -profile puts perf data and reports: beside the
// run's other results.
func (s *suite) profileDir() string { return filepath.Join(s.outDir(), "profiles") }

// outDir is this invocation's results directory.
func (s *suite) outDir() string {
	return filepath.Join(s.o.out, s.res.Started.Format("20060102-150405"))
}

// perfRecord is a `perf record` of agimo over one measured window.
type perfRecord struct {
	cmd  *exec.Cmd
	dir  string
	name string
	wg   sync.WaitGroup
	err  error
}

// startPerf samples pid's on-CPU call stacks (frame pointers, which Go
// keeps) for d. perf must be installed; a failure is reported in the
// results, not fatal.
func startPerf(pid int, dir, name string, d time.Duration) *perfRecord {
	p := &perfRecord{dir: dir, name: name}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.err = err
		return p
	}
	p.cmd = exec.Command("perf", "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", p.data(),
		"--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 2, 64))
	if err := p.cmd.Start(); err != nil {
		p.err = fmt.Errorf("perf record: %w", err)
		return p
	}
	p.wg.Go(func() {
		if err := p.cmd.Wait(); err != nil {
			p.err = fmt.Errorf("perf record: %w", err)
		}
	})
	return p
}

func (p *perfRecord) data() string { return filepath.Join(p.dir, "perf-"+p.name+".data") }

// finish waits for the recording and writes a text report beside it:
// self time by symbol (where the CPU goes, kernel included) and
// inclusive time of agimo's and its libraries' functions (which code
// path it goes through). It returns the report's path, or the error.
func (p *perfRecord) finish() string {
	p.wg.Wait()
	if p.err != nil {
		return p.err.Error()
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "perf profile of agimo: %s\n\n== kernel (sys) and user-space share of agimo's samples ==\n", p.name)
	split, err := perfReport(p.data(), "--no-children", "-F", "overhead_sys,overhead_us")
	if err != nil {
		return err.Error()
	}
	out.WriteString("   sys        user\n" + split)
	out.WriteString("\n== self time by symbol ([k] kernel, [.] user) ==\n")
	self, err := perfReport(p.data(), "--no-children", "-F", "overhead,sym", "--percent-limit", "0.7")
	if err != nil {
		return err.Error()
	}
	out.WriteString(self)
	incl, err := perfReport(p.data(), "--children", "-F", "overhead_children,overhead,sym", "--percent-limit", "2")
	if err != nil {
		return err.Error()
	}
	out.WriteString("\n== user-space functions: inclusive (with callees, syscalls included) and self time ==\n")
	for line := range strings.SplitSeq(incl, "\n") {
		if strings.Contains(line, "[.]") {
			out.WriteString(line + "\n")
		}
	}
	path := filepath.Join(p.dir, "perf-"+p.name+".txt")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return err.Error()
	}
	return path
}

// perfReport runs perf report without call graphs and returns its lines
// without the comment header.
func perfReport(data string, args ...string) (string, error) {
	args = append([]string{"report", "-i", data, "--stdio", "-g", "none"}, args...)
	b, err := exec.Command("perf", args...).Output()
	if err != nil {
		return "", fmt.Errorf("perf report: %w", err)
	}
	var out strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			out.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	return out.String(), nil
}

// heapProfile captures agimo's heap (in-use space, after a
// collection) and goroutine profiles while it holds its N items.
type heapProfile struct {
	dir, name string
	report    string // path of the text report, or why there is none
}

// capture is a no-op on a nil heapProfile, so callers need not check.
func (hp *heapProfile) capture(a *agimoProc) {
	if hp == nil {
		return
	}
	if err := os.MkdirAll(hp.dir, 0o755); err != nil {
		hp.report = err.Error()
		return
	}
	base := filepath.Join(hp.dir, "heap-"+hp.name)
	c := &http.Client{Timeout: time.Minute}
	for _, f := range []struct{ url, path string }{
		{"/debug/pprof/heap?gc=1", base + ".pb.gz"},
		{"/debug/pprof/goroutine?debug=1", base + "-goroutines.txt"},
	} {
		if err := fetch(c, "http://"+a.pprof+f.url, f.path); err != nil {
			hp.report = err.Error()
			return
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "heap profile of agimo (--pprof-address): %s, in-use space after a GC\n\n", hp.name)
	for _, args := range [][]string{
		{"tool", "pprof", "-top", "-nodecount=25", "-sample_index=inuse_space", base + ".pb.gz"},
		{"tool", "pprof", "-top", "-cum", "-nodecount=25", "-sample_index=inuse_space", base + ".pb.gz"},
	} {
		b, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			hp.report = fmt.Sprintf("go tool pprof: %v: %s", err, b)
			return
		}
		out.Write(b)
		out.WriteString("\n")
	}
	hp.report = base + ".txt"
	if err := os.WriteFile(hp.report, out.Bytes(), 0o644); err != nil {
		hp.report = err.Error()
	}
}

func fetch(c *http.Client, url, path string) error {
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile %s: status %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetch profile: %w", err)
	}
	return f.Close()
}
