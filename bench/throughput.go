package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agimo/agimo/bench/load"
)

// Target names, in the order of the first repetition.
const (
	tDirect = "direct"
	tAgimo  = "agimo"
	tNginx  = "nginx"
	tRelay  = "go-relay" // relay.go: WebSocket scenarios only
)

// target is where one run sends its load.
type target struct {
	name string
	addr string       // host:port the load generator connects to
	pids func() []int // the proxy's processes; nil for direct
	host string       // Host to send, if not the scenario's
	// scheme is the URL's, "http" if empty; https reaches a TLS listener.
	scheme string
	// pprof is agimo's pprof listener, set with -pgo: its CPU profile is
	// taken over each measured window.
	pprof string
	// fail, if set, says why this target cannot be measured: its runs are
	// recorded as failed with it, without load (edge.go).
	fail string
}

func (e *env) targets(sc *scenario) []target {
	if sc.edge != "" {
		return e.edgeTargets(sc)
	}
	if sc.accessLog {
		return e.accessLogTargets()
	}
	up := e.up.httpAddr
	if sc.web {
		up = e.up.web
	}
	ts := []target{
		{name: tDirect, addr: up},
		{name: tAgimo, addr: e.agimo.addr, pprof: e.agimo.pprof, pids: func() []int { return []int{e.agimo.p.pid()} }},
	}
	if e.nginx != nil {
		ts = append(ts, target{name: tNginx, addr: e.nginx.addr, pids: e.nginx.pids})
	}
	if e.relay != nil && sc.mode == load.ModeWS {
		ts = append(ts, target{name: tRelay, addr: e.relay.addr, pids: func() []int { return []int{e.relay.p.pid()} }})
	}
	return ts
}

// runThroughput measures sc at each connection count: reps repetitions,
// each running every target once, the order rotated per repetition, so
// that drift in the machine's speed spreads over all targets alike.
func (e *env) runThroughput(ctx context.Context, sc *scenario) error {
	ts := e.targets(sc)
	failed, firstErr := 0, ""
	for _, conns := range sc.conns {
		for rep := range e.s.o.reps {
			for i := range ts {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				t := ts[(i+rep)%len(ts)]
				r := e.measure(ctx, sc, t, conns, rep, "")
				r.Order = i
				e.s.res.Runs = append(e.s.res.Runs, r)
				logRun(&r)
				if r.Error != "" {
					if failed++; firstErr == "" {
						firstErr = fmt.Sprintf("%s: %s", r.Target, firstLine(r.Error))
					}
				}
			}
		}
		if e.s.o.profile && ctx.Err() == nil {
			e.profileRun(ctx, sc, conns)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of its runs failed; the first: %s", failed, firstErr)
	}
	return nil
}

// profileRun is one more agimo run, recorded with perf: apart from the
// repetitions, so that perf's own cost does not touch the figures.
func (e *env) profileRun(ctx context.Context, sc *scenario, conns int) {
	name := fmt.Sprintf("%s-%s-c%d", e.lay.Name, sc.name, conns)
	ts := e.targets(sc)
	want := tAgimo
	if sc.accessLog {
		want = tAgimoLog // the log's cost is what is looked for
	}
	i := slices.IndexFunc(ts, func(t target) bool { return t.name == want })
	r := e.measure(ctx, sc, ts[i], conns, -1, name)
	p := ProfileRun{Layout: e.lay.Name, Scenario: sc.name, Conns: conns, Report: r.Profile, Error: r.Error}
	if r.Result != nil {
		p.Rate = unitOf(sc.name).rate(&r)
	}
	e.s.res.Profiles = append(e.s.res.Profiles, p)
	fmt.Fprintf(os.Stderr, "bench: %s %s c=%d profiled: %s\n", e.lay.Name, sc.name, conns, r.Profile)
}

func logRun(r *ThroughputRun) {
	prefix := fmt.Sprintf("bench: %s %s c=%d rep %d %-8s", r.Layout, r.Scenario, r.Conns, r.Rep+1, r.Target)
	if r.Error != "" {
		fmt.Fprintf(os.Stderr, "%s  FAILED: %s\n", prefix, firstLine(r.Error))
		return
	}
	res := r.Result
	fmt.Fprintf(os.Stderr, "%s %9.0f/s  p99 %-8s errors %d  proxy CPU %.2fs\n", prefix, res.OpsPerSec(),
		load.Fmt(res.Latency.Quantile(.99)), res.Errors, r.ProxyCPU)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// loadArgs are the load generator's flags for sc against t.
func (e *env) loadArgs(sc *scenario, t target, conns int) []string {
	host := sc.hostOr()
	if t.host != "" {
		host = t.host
	}
	scheme := t.scheme
	if scheme == "" {
		scheme = "http"
	}
	o := e.s.o
	args := []string{"-json", "-mode", string(sc.mode), "-target", scheme + "://" + t.addr + sc.path, "-host", host,
		"-c", strconv.Itoa(conns), "-d", o.dur.String(), "-warmup", o.warmup.String()}
	if scheme == "https" && e.s.cert != nil {
		args = append(args, "-cacert", e.s.cert.certFile)
	}
	if sc.streams > 0 {
		args = append(args, "-streams", strconv.Itoa(sc.streams))
	}
	if sc.body > 0 {
		args = append(args, "-body", strconv.Itoa(sc.body))
	}
	if sc.msg > 0 {
		args = append(args, "-msg", strconv.Itoa(sc.msg))
	}
	if sc.events > 0 {
		args = append(args, "-events", strconv.Itoa(sc.events))
	}
	return args
}

// measure runs the load generator once, as a child process pinned like
// the upstream, and samples the proxy's and the upstream's CPU time when
// the child says its measured window starts and ends.
// With profile set (a file name stem), agimo is recorded with perf over
// the measured window.
func (e *env) measure(ctx context.Context, sc *scenario, t target, conns, rep int, profile string) ThroughputRun {
	// CPU figures stay zero, with WindowS, unless both phase marks came.
	r := ThroughputRun{Layout: e.lay.Name, Scenario: sc.name, Conns: conns, Rep: rep, Target: t.name}
	if t.fail != "" {
		r.Error = t.fail
		return r
	}
	bin, args := e.s.self, e.loadArgs(sc, t, conns)
	if e.lay.LoadCPUs != "" {
		args = append([]string{"-c", e.lay.LoadCPUs, bin}, args...)
		bin = "taskset"
	}
	// Bounded even if the child hangs: its own timeouts should end it at
	// the end of its run plus a second.
	cctx, cancel := context.WithTimeout(ctx, e.s.o.warmup+e.s.o.dur+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if err := cmd.Start(); err != nil {
		r.Error = fmt.Sprintf("start load generator: %v", err)
		return r
	}
	var (
		cpu0, cpu1   cpuSample
		startSampled bool
		prof         *perfRecord
		cpuProf      *cpuProfile
	)
	sc2 := bufio.NewScanner(pipe)
	for sc2.Scan() {
		line := sc2.Text()
		phase, ok := strings.CutPrefix(line, phasePrefix)
		if !ok {
			stderr.WriteString(line + "\n")
			continue
		}
		if phase == "true" {
			cpu0 = e.sampleCPU(t, cmd.Process.Pid)
			startSampled = true
			if profile != "" {
				prof = startPerf(t.pids()[0], e.s.profileDir(), profile, e.s.o.dur)
			}
			if t.pprof != "" && rep >= 0 {
				name := fmt.Sprintf("cpu-%s-%s-c%d-rep%d.pb.gz", e.lay.Name, sc.name, conns, rep+1)
				cpuProf = startCPUProfile(t.pprof, filepath.Join(e.s.profileDir(), name), e.s.o.dur)
			}
		} else if startSampled {
			cpu1 = e.sampleCPU(t, cmd.Process.Pid)
			r.ProxyCPU, r.UpstreamCPU, r.LoadCPU = cpu1.proxy-cpu0.proxy, cpu1.upstream-cpu0.upstream, cpu1.load-cpu0.load
			r.WindowS = cpu1.at.Sub(cpu0.at).Seconds()
			// What the machine did besides: other engineers' builds and
			// tests share these CPUs, and this says how much they took.
			r.OtherCPU = max(0, (cpu1.machine-cpu0.machine)-r.ProxyCPU-r.UpstreamCPU-r.LoadCPU)
		}
	}
	err = cmd.Wait()
	if prof != nil {
		r.Profile = prof.finish()
	}
	if cpuProf != nil {
		if path, err := cpuProf.finish(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: -pgo: %s %s c=%d: %v\n", e.lay.Name, sc.name, conns, err)
		} else {
			e.s.cpuProfiles = append(e.s.cpuProfiles, path)
		}
	}
	if err != nil {
		r.Error = fmt.Sprintf("load generator: %v: %s", err, strings.TrimSpace(stderr.String()))
		return r
	}
	var res load.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		r.Error = fmt.Sprintf("load generator output: %v", err)
		return r
	}
	r.Result = &res
	if res.Ops == 0 {
		r.Error = fmt.Sprintf("no successful operation; errors: %v", res.ErrKinds)
	}
	return r
}

// cpuSample is CPU seconds used so far: by the proxy (0 for direct), the
// upstream, the load generator and the whole machine.
type cpuSample struct {
	at                             time.Time
	proxy, upstream, load, machine float64
}

func (e *env) sampleCPU(t target, loadPID int) cpuSample {
	s := cpuSample{at: time.Now()}
	if t.pids != nil {
		for _, pid := range t.pids() {
			v, _ := cpuSeconds(pid)
			s.proxy += v
		}
	}
	s.upstream, _ = cpuSeconds(e.up.p.pid())
	s.load, _ = cpuSeconds(loadPID)
	s.machine, _ = machineBusy()
	// The kernel threads that finish network processing deferred from
	// softirq work for everyone's sockets, ours included: not a
	// neighbour's load.
	for _, pid := range e.s.softirqPIDs {
		v, _ := cpuSeconds(pid)
		s.machine -= v
	}
	return s
}
