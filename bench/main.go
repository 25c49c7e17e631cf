// Command bench is Agimo's benchmark suite. It has two faces.
//
// A load generator for any target:
//
//	go run ./bench -target http://127.0.0.1:8080/ -host app.example -c 64 -d 10s [-rate 20000]
//	go run ./bench -mode ws  -target ws://127.0.0.1:8080/ws -host app.example -c 64 -msg 64
//	go run ./bench -mode sse -target http://127.0.0.1:8080/sse -host app.example -c 64 -events 100
//	go run ./bench -mode handshake -target https://127.0.0.1:8443/ -host app.example -cacert ca.pem
//	go run ./bench -mode h2 -target https://127.0.0.1:8443/ -host app.example -c 32 -streams 8
//	go run ./bench -mode grpc -target http://127.0.0.1:8080 -host grpc.example -c 64
//
// prints throughput, latency percentiles and errors (with a live progress
// line on a terminal), or with -json the raw result including the whole
// latency histogram.
//
// Local scenarios, which start everything on loopback themselves (a local
// Kubernetes control plane from hack/controlplane, the upstream servers,
// Agimo and nginx from Debian's package) and compare the targets in one
// run:
//
//	go run ./bench all              # every scenario, full settings (~10 min)
//	go run ./bench -smoke all       # every scenario for a second or two (CI)
//	go run ./bench http-small release
//
// Scenarios: http-small, http-4k, post-64k, ws-echo, ws-throughput, sse,
// https-keepalive, tls-handshakes, h2, h2c, grpc-unary (the edge: edge.go), access-log
// (agimo with its access log on against off: accesslog.go),
// release, parked-capacity, parked-at-once, tunnel-capacity, scale. Results go to stdout as
// Markdown tables and to -out DIR as JSON (every raw figure), Markdown and
// an SVG plot of the latency distributions. BENCHMARKS.md explains the
// method and holds the latest results.
//
// It needs Linux and, for the scenarios, root (apt-get, a control plane,
// raised file limits) and taskset; h2load (nghttp2-client) for -mode h2.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agimo/agimo/bench/load"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "upstream" {
		// The suite's own child process (see upstream.go), not for users.
		if err := runUpstream(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "relay" {
		// The Go copy-loop relay target (see relay.go), not for users.
		if err := runRelay(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		stop()
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	// Load generator.
	target, host, mode, method string
	conns, bodySize, msgSize   int
	events, streams            int
	caFile                     string
	rate                       float64
	dur, warmup, timeout       time.Duration
	jsonOut                    bool

	// Scenarios.
	scenarios              []string
	smoke                  bool
	reps                   int
	layouts                string
	out                    string
	kubeconfig             string
	agimoBin, nginxBin     string
	profile                bool
	pgo                    string
	parkedN, tunnelN, relN string
	atOnceN, scaleN        string
	render                 string
}

func parseArgs(args []string, stderr io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench [flags] -target URL          (load generator)\n"+
			"       bench [flags] SCENARIO...|all     (local scenarios: %s)\n\nflags:\n", strings.Join(scenarioNames(), ", "))
		fs.PrintDefaults()
	}
	fs.StringVar(&o.target, "target", "", "load generator: target URL (http://host:port/path; ws:// for -mode ws)")
	fs.StringVar(&o.host, "host", "", "load generator: Host header (default: the URL's)")
	fs.StringVar(&o.mode, "mode", "http", "load generator: http (http:// or https://), ws (echo round trips), sse, "+
		"handshake (a new TLS 1.3 connection per request), h2 (h2load: https:// h2, http:// h2c) or grpc (unary calls)")
	fs.StringVar(&o.caFile, "cacert", "", "load generator: PEM certificates to verify https targets with (default: the system's)")
	fs.IntVar(&o.streams, "streams", 1, "load generator: concurrent streams per connection (-mode h2)")
	fs.IntVar(&o.conns, "c", 64, "load generator: connections")
	fs.DurationVar(&o.dur, "d", 0, "measured duration of each run (default 10s for -target, 3s per scenario run, 1s with -smoke)")
	fs.DurationVar(&o.warmup, "warmup", -1, "unmeasured warm-up before each run (default 1s for -target, 0.5s per scenario run)")
	fs.Float64Var(&o.rate, "rate", 0, "load generator: total requests per second (0: as fast as the target answers)")
	fs.StringVar(&o.method, "method", "", "load generator: HTTP method (default GET, or POST with -body)")
	fs.IntVar(&o.bodySize, "body", 0, "load generator: request body size in bytes, streamed")
	fs.IntVar(&o.msgSize, "msg", 64, "load generator: WebSocket message size in bytes")
	fs.IntVar(&o.events, "events", 0, "load generator: SSE events to read per stream before reconnecting (0: until the server ends it)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "load generator: timeout of one request, round trip or stream")
	fs.BoolVar(&o.jsonOut, "json", false, "load generator: print the raw result as JSON")

	fs.BoolVar(&o.smoke, "smoke", false, "scenarios: a second or two each with small counts (CI)")
	fs.IntVar(&o.reps, "reps", 0, "scenarios: repetitions of each figure (default 3; 1 with -smoke)")
	fs.StringVar(&o.layouts, "layouts", "", "scenarios: CPU layouts, comma-separated: pinned, float (default both; pinned with -smoke)")
	fs.StringVar(&o.out, "out", "", "scenarios: results directory (default bench/results in the repository)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "scenarios: use this cluster instead of starting a local control plane")
	fs.StringVar(&o.agimoBin, "agimo", "", "scenarios: agimo binary (default: go build the repository)")
	fs.StringVar(&o.nginxBin, "nginx", "", "scenarios: nginx binary (default: PATH, installed with apt-get if missing)")
	fs.BoolVar(&o.profile, "profile", false, "scenarios: record agimo with perf during its first run of each throughput figure")
	fs.StringVar(&o.pgo, "pgo", "", "scenarios: take Go's CPU profile of agimo (--pprof-address) over the measured window of each of its "+
		"throughput runs and write them merged to this file, for profile-guided optimisation (make pgo writes default.pgo)")
	fs.StringVar(&o.relN, "release-n", "", "scenarios: parked counts for release (default 100,1000,10000)")
	fs.StringVar(&o.parkedN, "parked-n", "", "scenarios: parked counts for parked-capacity (default 10000,50000)")
	fs.StringVar(&o.atOnceN, "parked-at-once-n", "", "scenarios: parked counts for parked-at-once (default 10000)")
	fs.StringVar(&o.scaleN, "scale-n", "", "scenarios: configured service counts for scale, the smallest is the baseline (default 1,1000,10000)")
	fs.StringVar(&o.tunnelN, "tunnel-n", "", "scenarios: open tunnels for tunnel-capacity (default 10000)")
	fs.StringVar(&o.render, "render", "", "re-render results.md and latency.svg from a results.json (and print the Markdown)")

	// Flags may follow scenario names too: parse, take names, repeat.
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			o.scenarios = append(o.scenarios, args[0])
			args = args[1:]
		}
		if len(args) == 0 {
			break
		}
	}
	if o.target != "" && len(o.scenarios) > 0 {
		return nil, errors.New("give either -target (load generator) or scenario names, not both")
	}
	if o.target == "" && len(o.scenarios) == 0 && o.render == "" {
		fs.Usage()
		return nil, flag.ErrHelp
	}
	return &o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	if o.target != "" {
		return runLoad(ctx, o, stdout, stderr)
	}
	if o.render != "" {
		return rerender(o.render, stdout)
	}
	return runScenarios(ctx, o, stdout)
}

// runLoad is the load generator face.
func runLoad(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	if o.dur <= 0 {
		o.dur = 10 * time.Second
	}
	if o.warmup < 0 {
		o.warmup = time.Second
	}
	cfg := load.Config{
		URL: o.target, Host: o.host, Conns: o.conns, Dur: o.dur, Warmup: o.warmup, Rate: o.rate,
		Method: o.method, BodySize: o.bodySize, MsgSize: o.msgSize, Timeout: o.timeout,
		CAFile: o.caFile, Streams: o.streams,
	}
	if o.jsonOut {
		// The suite runs this face as its child and reads these lines to
		// sample the proxy's CPU time over exactly the measured window.
		cfg.Phase = func(measuring bool) {
			fmt.Fprintf(stderr, "%s%v\n", phasePrefix, measuring)
		}
	} else if isTerminal(os.Stdout) {
		cfg.Progress = progressLine(stdout, o.dur+o.warmup)
	}
	var (
		res *load.Result
		err error
	)
	switch load.Mode(o.mode) {
	case load.ModeHTTP:
		res, err = load.HTTP(ctx, cfg)
	case load.ModeWS:
		res, err = load.WS(ctx, cfg)
	case load.ModeSSE:
		res, err = load.SSE(ctx, cfg, o.events)
	case load.ModeHandshake:
		res, err = load.Handshakes(ctx, cfg)
	case load.ModeH2:
		res, err = load.H2Load(ctx, cfg)
	case load.ModeGRPC:
		res, err = load.GRPC(ctx, cfg)
	default:
		return fmt.Errorf("unknown -mode %q: want http, ws, sse, handshake, h2 or grpc", o.mode)
	}
	if err != nil {
		return err
	}
	if cfg.Progress != nil {
		fmt.Fprint(stdout, "\r\033[K")
	}
	if o.jsonOut {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprint(stdout, res.Summary())
	if res.Ops == 0 {
		return errors.New("no successful operation")
	}
	return nil
}

// phasePrefix starts the lines a -json load run writes on stderr when its
// measured window starts ("true") and ends ("false").
const phasePrefix = "bench-phase: "

// progressLine returns a Progress callback that redraws one line with the
// rate over the last second.
func progressLine(w io.Writer, total time.Duration) func(load.Snapshot) {
	var last load.Snapshot
	return func(s load.Snapshot) {
		rate := float64(s.Ops-last.Ops) / (s.Elapsed - last.Elapsed).Seconds()
		phase := "warm-up"
		if s.Measured {
			phase = "measuring"
		}
		fmt.Fprintf(w, "\r\033[K%5.1fs / %s  %s  %.0f/s  errors %d", s.Elapsed.Seconds(), total, phase, rate, s.Errors)
		last = s
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
