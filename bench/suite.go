package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/agimo/agimo/bench/load"
)

// suite is one invocation's shared state across layouts.
type suite struct {
	o        *options
	root     string // repository root
	dir      string // temp dir: binaries, configs, logs
	self     string // this program, run again as load generator and upstream
	agimoBin string
	nginxBin string
	fdLimit  uint64 // RLIMIT_NOFILE of this process and its children
	// softirqPIDs are the ksoftirqd/N kernel threads.
	softirqPIDs []int
	cluster     *cluster
	res         *Results
	cert        *benchCert // the edge scenarios' certificate (edge.go)
	// cpuProfiles are the -pgo profiles taken so far.
	cpuProfiles []string
}

// runScenarios is the scenario face: set up once, run every scenario in
// every layout, write the results.
func runScenarios(ctx context.Context, o *options, stdout io.Writer) (err error) {
	sel, err := selectScenarios(o)
	if err != nil {
		return err
	}
	lays, err := selectLayouts(o)
	if err != nil {
		return err
	}
	applyDefaults(o)
	s := &suite{o: o}
	if s.root, err = findRoot(); err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join(s.root, "bench", "results")
	}
	if s.self, err = os.Executable(); err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	if s.dir, err = os.MkdirTemp("", "agimo-bench-"); err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer func() {
		if err == nil {
			os.RemoveAll(s.dir)
		} else {
			fmt.Fprintf(os.Stderr, "bench: logs kept in %s\n", s.dir)
		}
	}()
	// 50,000 parked requests are 50,000 sockets here and in agimo, which
	// inherits the limit. Where the hard limit cannot be raised (no
	// CAP_SYS_RESOURCE, as in some containers) the capacity scenarios
	// measure at the largest count that fits and say so.
	var lerr error
	if s.fdLimit, lerr = raiseFileLimit(1 << 20); lerr != nil {
		fmt.Fprintf(os.Stderr, "bench: %v; going on with %d open files\n", lerr, s.fdLimit)
	}
	s.softirqPIDs = pidsByComm("ksoftirqd/")
	if needsNginx(sel) {
		if s.nginxBin, err = findNginx(o.nginxBin); err != nil {
			return err
		}
	}
	if s.agimoBin = o.agimoBin; s.agimoBin == "" {
		if s.agimoBin, err = buildAgimo(s.root, s.dir); err != nil {
			return err
		}
	}
	if o.kubeconfig != "" {
		s.cluster, err = existingCluster(o.kubeconfig)
	} else {
		s.cluster, err = startCluster(s.root)
	}
	if err != nil {
		return err
	}
	defer s.cluster.stop()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = s.cluster.setup(sctx)
	cancel()
	if err != nil {
		return err
	}

	s.res = &Results{
		Started: time.Now(), Command: commandLine(), Machine: describeMachine(s.root, s.nginxBin), Layouts: lays,
		Settings: Settings{Smoke: o.smoke, Reps: o.reps, DurationS: o.dur.Seconds(), WarmupS: o.warmup.Seconds(), Profile: o.profile},
	}
	for i, lay := range lays {
		if ctx.Err() != nil {
			break
		}
		if err := s.runLayout(ctx, lay, sel, i == 0); err != nil {
			s.res.Failures = append(s.res.Failures, ScenarioFailed{Layout: lay.Name, Scenario: "(setup)", Error: err.Error()})
		}
	}
	s.res.Seconds = time.Since(s.res.Started).Seconds()
	if err := s.writeResults(stdout); err != nil {
		return err
	}
	if o.pgo != "" && ctx.Err() == nil {
		if err := writePGO(s.cpuProfiles, o.pgo); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if n := len(s.res.Failures); n > 0 {
		return fmt.Errorf("%d scenario(s) failed (see the Failures section above)", n)
	}
	return nil
}

func applyDefaults(o *options) {
	if o.reps <= 0 {
		o.reps = 3
		if o.smoke {
			o.reps = 1
		}
	}
	if o.dur <= 0 {
		o.dur = 3 * time.Second
		if o.smoke {
			o.dur = 300 * time.Millisecond
		}
	}
	if o.warmup < 0 {
		o.warmup = 500 * time.Millisecond
		if o.smoke {
			o.warmup = 100 * time.Millisecond
		}
	}
}

func needsNginx(sel []*scenario) bool {
	return slices.ContainsFunc(sel, func(s *scenario) bool { return (s.kind == throughput && !s.accessLog) || s.kind == tunnelCap })
}

// findRoot walks up from the working directory to Agimo's go.mod.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/agimo/agimo\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the scenarios from inside the agimo repository (no go.mod of github.com/agimo/agimo above the working directory)")
		}
		dir = parent
	}
}

func commandLine() string {
	args := os.Args[1:]
	return "go run ./bench " + strings.Join(args, " ")
}

// env is what one layout runs against: the upstream, an agimo and an
// nginx, placed on CPUs as the layout says.
type env struct {
	s     *suite
	lay   layout
	dir   string
	up    *upstream
	agimo *agimoProc
	nginx *nginxProc
	relay *relayProc // the Go copy-loop relay, for the WebSocket scenarios
	edge  *edgeEnv   // the edge scenarios' agimo and nginx (edge.go)

	// agimoLog is agimo with the access log on (accesslog.go).
	agimoLog *agimoProc
}

// runLayout starts the processes for lay, runs every selected scenario
// and stops them. Capacity scenarios measure memory, which does not
// depend on CPU placement: they run in the first layout only, and so does
// scale, whose CPU figure is a ratio between agimos in the same layout.
func (s *suite) runLayout(ctx context.Context, lay layout, sel []*scenario, first bool) error {
	e := &env{s: s, lay: lay, dir: filepath.Join(s.dir, lay.Name)}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return fmt.Errorf("layout dir: %w", err)
	}
	defer e.stop()
	var err error
	if e.up, err = startUpstream(s.self, e.dir, lay.LoadCPUs); err != nil {
		return err
	}
	if e.agimo, err = e.startAgimo("agimo"); err != nil {
		return err
	}
	if s.nginxBin != "" {
		if e.nginx, err = e.startNginx("nginx"); err != nil {
			return err
		}
		if err := checkParity(e.agimo.addr, e.nginx.addr); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(sel, func(sc *scenario) bool { return sc.kind == throughput && sc.mode == load.ModeWS }) {
		if e.relay, err = startRelay(s.self, e.dir, lay.ProxyCPUs, map[string]string{hostWeb: e.up.web}); err != nil {
			return err
		}
		var ngAddr string
		if e.nginx != nil {
			ngAddr = e.nginx.addr
		}
		note, err := checkUpgradeParity(e.agimo.addr, e.relay.addr, ngAddr)
		if err != nil {
			return err
		}
		if note != "" && !slices.Contains(s.res.Notes, note) {
			s.res.Notes = append(s.res.Notes, note)
		}
	}
	if slices.ContainsFunc(sel, func(sc *scenario) bool { return sc.edge != "" }) {
		if err := e.startEdge(); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(sel, func(sc *scenario) bool { return sc.accessLog }) {
		if e.agimoLog, err = e.startAgimoLog(); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "bench: layout %s: %s\n", lay.Name, lay.Desc)
	for _, sc := range sel {
		if ctx.Err() != nil {
			return nil
		}
		if (sc.kind == parkedCap || sc.kind == atOnceCap || sc.kind == tunnelCap || sc.kind == scale) && !first {
			continue
		}
		var err error
		switch sc.kind {
		case throughput:
			err = e.runThroughput(ctx, sc)
			if sc.accessLog {
				e.noteAccessLog()
			}
		case release:
			err = e.runRelease(ctx, sc)
		case parkedCap, atOnceCap:
			err = e.runParkedCapacity(ctx, sc)
		case scale:
			err = e.runScale(ctx, sc)
		case tunnelCap:
			err = e.runTunnelCapacity(ctx, sc)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s/%s failed: %v\n", lay.Name, sc.name, err)
			s.res.Failures = append(s.res.Failures, ScenarioFailed{Layout: lay.Name, Scenario: sc.name, Error: err.Error()})
		}
	}
	return nil
}

// agimoConf is the config every agimo of the suite runs: the two
// always-ready hosts and the one that parks.
func (e *env) agimoConf() string {
	return agimoConfig(benchNS, []agimoService{
		{Host: hostHTTP, Service: "hot-http", Address: e.up.httpAddr},
		{Host: hostWeb, Service: "hot-web", Address: e.up.web},
		{Host: hostCold, Service: "cold", Address: e.up.httpAddr},
	})
}

func (e *env) startAgimo(name string) (*agimoProc, error) {
	return startAgimo(e.s.agimoBin, e.dir, name, e.lay.ProxyCPUs, e.s.cluster.kubeconfig, e.agimoConf(), e.s.o.pgo != "")
}

func (e *env) startNginx(name string) (*nginxProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginx dir: %w", err)
	}
	return startNginx(e.s.nginxBin, dir, e.lay.ProxyCPUs, nginxParams{
		Port: port, HTTPHost: hostHTTP, WebHost: hostWeb, HTTPUp: e.up.httpAddr, WebUp: e.up.web,
		Conns: int(min(e.s.fdLimit, 1<<16)) - fdReserve, Files: int(min(e.s.fdLimit, 1<<20)),
	})
}

func (e *env) stop() {
	if e.edge != nil {
		e.edge.stop()
	}
	if e.relay != nil {
		e.relay.stop()
	}
	if e.agimoLog != nil {
		e.agimoLog.stop()
	}
	if e.nginx != nil {
		e.nginx.stop()
	}
	if e.agimo != nil {
		e.agimo.stop()
	}
	if e.up != nil {
		e.up.stop()
	}
}
