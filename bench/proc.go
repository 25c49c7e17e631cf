package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is a child process the suite started and must stop: agimo, nginx,
// the upstream servers. Its output goes to a log file in the run's
// directory, shown when it fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid once done is closed
}

// startProc runs bin with args, pinned to cpus by taskset when cpus is
// not empty. taskset execs the program, so the PID is the program's and
// every thread it starts inherits the pinning.
func startProc(name, logDir, cpus string, extra []*os.File, bin string, args ...string) (*proc, error) {
	if cpus != "" {
		args = append([]string{"-c", cpus, bin}, args...)
		bin = "taskset"
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.ExtraFiles = extra
	// Its own process group: a Ctrl-C in the terminal reaches the suite,
	// which then stops its children in order instead of racing them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace for the exit, then kills. It waits
// for the exit either way, so no child outlives the suite.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	fmt.Fprintf(os.Stderr, "bench: %s did not stop within %s after %v; killing it\n", p.name, grace, sig)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last lines of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// waitDial waits until addr accepts TCP connections or the process exits.
func (p *proc) waitDial(addr string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before listening on %s:\n%s", p.name, p.err, addr, p.tail())
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening on %s after %s:\n%s", p.name, addr, timeout, p.tail())
}

// cpuSeconds is a process's user+system CPU time from /proc/PID/stat
// (clock ticks, 100 per second on Linux), including exited threads.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	return parseStatCPU(b)
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture Go supports.
const clockTicks = 100

func parseStatCPU(b []byte) (float64, error) {
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses: fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("cpu time: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')' come state (field 3) ... utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, errors.New("cpu time: short /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	return float64(ut+st) / clockTicks, nil
}

// machineBusy is the CPU seconds all CPUs spent busy since boot, from
// /proc/stat's first line (user nice system idle iowait irq softirq
// steal ...): everything but idle and iowait. Steal counts as busy: a
// hypervisor that takes the CPU away slows the run like a neighbour does.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("machine cpu: %w", err)
	}
	return parseMachineBusy(b)
}

func parseMachineBusy(b []byte) (float64, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("machine cpu: malformed /proc/stat")
	}
	var busy uint64
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("machine cpu: %w", err)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return float64(busy) / clockTicks, nil
}

// rssBytes is a process's resident set size from /proc/PID/status.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("rss: no VmRSS line")
}

// fdCount is the number of descriptors pid has open.
func fdCount(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("fds: %w", err)
	}
	return len(ents), nil
}

// childPIDs lists the processes whose parent is pid (nginx's workers).
func childPIDs(pid int) []int {
	parent := strconv.Itoa(pid)
	return procPIDs(func(n int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		return len(f) > 1 && f[1] == parent
	})
}

// pidsByComm lists the processes whose command name starts with prefix.
func pidsByComm(prefix string) []int {
	return procPIDs(func(n int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n))
		return err == nil && strings.HasPrefix(string(b), prefix)
	})
}

// procPIDs lists the processes in /proc for which match is true.
func procPIDs(match func(pid int) bool) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && match(n) {
			out = append(out, n)
		}
	}
	return out
}

// pinSelf sets the CPU affinity of every thread of this process (new
// threads inherit it from the thread that creates them). cpus nil means
// all CPUs. Used where the suite itself is the client (release and
// capacity scenarios), so that in the pinned layout it stays off the
// proxy's CPU.
func pinSelf(cpus []int) error {
	var set unix.CPUSet
	if cpus == nil {
		for i := range runtime.NumCPU() {
			set.Set(i)
		}
	} else {
		for _, c := range cpus {
			set.Set(c)
		}
	}
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A thread may exit meanwhile: ESRCH is not a failure.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d: %w", tid, err)
		}
	}
	return nil
}

// raiseFileLimit lifts RLIMIT_NOFILE to want (the hard limit too, which
// root may do), so the capacity scenarios can hold 50,000 sockets here
// and in agimo, which inherits it. Without root it settles for the hard
// limit.
func raiseFileLimit(want uint64) (uint64, error) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("rlimit: %w", err)
	}
	if l.Cur >= want {
		return l.Cur, nil
	}
	nl := unix.Rlimit{Cur: want, Max: max(want, l.Max)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &nl); err != nil {
		nl = unix.Rlimit{Cur: l.Max, Max: l.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &nl); err != nil {
			return l.Cur, fmt.Errorf("rlimit: %w", err)
		}
	}
	return nl.Cur, nil
}

// freePort returns a TCP port free on 127.0.0.1 right now, for servers
// that take a port number rather than a listener (agimo, nginx). Another
// process could take it before they bind; they then fail to start, loudly.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
