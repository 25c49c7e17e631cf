package main

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/agimo/agimo/bench/load"
)

// kind says how a scenario is measured.
type kind int

const (
	throughput kind = iota // the load generator against direct, Agimo and nginx
	release                // parked requests released by one EndpointSlice update
	parkedCap              // memory per parked request
	atOnceCap              // the same, every client arriving at once
	tunnelCap              // memory per idle WebSocket tunnel
	scale                  // cost of N configured services (scale.go)
)

// scenario is one name on the command line.
type scenario struct {
	name string
	kind kind
	// Throughput scenarios: what the load generator sends.
	mode    load.Mode
	path    string
	web     bool // served by the web upstream (WebSocket, SSE)
	body    int  // request body bytes
	msg     int  // WebSocket message bytes
	events  int  // SSE events per stream
	streams int  // HTTP/2 streams per connection (h2load -m)
	// edge scenarios (edge.go): where the load goes, and its Host if not
	// hostHTTP.
	edge    edgeKind
	host    string
	conns   []int
	smokeC  []int
	counts  []int // release and capacity: parked requests or tunnels
	smokeN  []int
	summary string

	// accessLog: the targets are agimo and agimo-log, the same with the
	// access log on (accesslog.go).
	accessLog bool
}

var scenarios = []*scenario{
	{name: "http-small", kind: throughput, mode: load.ModeHTTP, path: "/small", conns: []int{64, 256}, smokeC: []int{8},
		summary: "GET, 13-byte response body, keep-alive"},
	{name: "http-4k", kind: throughput, mode: load.ModeHTTP, path: "/4k", conns: []int{64, 256}, smokeC: []int{8},
		summary: "GET, 4 KiB response body, keep-alive"},
	{name: "post-64k", kind: throughput, mode: load.ModeHTTP, path: "/upload", body: 64 << 10, conns: []int{64}, smokeC: []int{8},
		summary: "POST, 64 KiB request body streamed, short response"},
	{name: "ws-echo", kind: throughput, mode: load.ModeWS, path: "/ws", web: true, msg: 64, conns: []int{64}, smokeC: []int{8},
		summary: "WebSocket, 64-byte message echoed, round trips"},
	{name: "ws-throughput", kind: throughput, mode: load.ModeWS, path: "/ws", web: true, msg: 64 << 10, conns: []int{16}, smokeC: []int{4},
		summary: "WebSocket, 64 KiB messages echoed, bytes per second"},
	{name: "sse", kind: throughput, mode: load.ModeSSE, path: "/sse?n=100", web: true, events: 100, conns: []int{64}, smokeC: []int{8},
		summary: "server-sent events: 100-event streams, time to first event and events per second"},
	{name: "https-keepalive", kind: throughput, mode: load.ModeHTTP, edge: edgeTLS, path: "/small", conns: []int{64, 256}, smokeC: []int{8},
		summary: "GET, 13-byte response body, keep-alive, over TLS (HTTP/1.1 by ALPN)"},
	{name: "tls-handshakes", kind: throughput, mode: load.ModeHandshake, edge: edgeTLS, path: "/small", conns: []int{64}, smokeC: []int{4},
		summary: "a new connection per GET: full TLS 1.3 handshake (X25519, ECDSA P-256 certificate, no resumption), one request, close"},
	{name: "h2", kind: throughput, mode: load.ModeH2, edge: edgeTLS, path: "/small", streams: 8, conns: []int{32}, smokeC: []int{4},
		summary: "h2load: GET, 13-byte response body, HTTP/2 over TLS (ALPN h2), 8 concurrent streams per connection"},
	{name: "h2c", kind: throughput, mode: load.ModeH2, edge: edgeH2C, path: "/small", streams: 8, conns: []int{32}, smokeC: []int{4},
		summary: "h2load: the same as h2 over h2c with prior knowledge"},
	{name: "grpc-unary", kind: throughput, mode: load.ModeGRPC, edge: edgeGRPC, host: hostGRPC, conns: []int{64}, smokeC: []int{8},
		summary: "grpc-go unary calls (grpc.testing.TestService/UnaryCall, 13-byte payloads) over h2c, one connection per client; the upstream speaks h2c"},
	{name: "access-log", kind: throughput, mode: load.ModeHTTP, path: "/small", accessLog: true, conns: []int{64, 256}, smokeC: []int{8},
		summary: "http-small against agimo with the access log off and on (JSON, every request, to stdout into a file)"},
	{name: "release", kind: release, counts: []int{100, 1000, 10000}, smokeN: []int{50},
		summary: "N parked requests released by one EndpointSlice update; time from the update to each response"},
	{name: "parked-capacity", kind: parkedCap, counts: []int{10000, 50000}, smokeN: []int{200},
		summary: "RSS and goroutines of agimo per parked request"},
	{name: "parked-at-once", kind: atOnceCap, counts: []int{10000}, smokeN: []int{200},
		summary: "RSS and goroutines of agimo per parked request, all N clients connecting and sending at once"},
	{name: "tunnel-capacity", kind: tunnelCap, counts: []int{10000}, smokeN: []int{100},
		summary: "RSS per idle WebSocket tunnel (agimo; nginx for reference)"},
	{name: "scale", kind: scale, counts: []int{1, 1000, 10000}, smokeN: []int{1, 100},
		summary: "agimo with N configured services (half on wildcard hosts), each a Service with a ready EndpointSlice: " +
			"start to /readyz, RSS per service, http-small CPU per request to an exact and a wildcard host against the smallest N"},
}

// hostOr is the Host the scenario's load sends.
func (s *scenario) hostOr() string {
	switch {
	case s.host != "":
		return s.host
	case s.web:
		return hostWeb
	}
	return hostHTTP
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

// selectScenarios resolves the command line's names ("all" = every one),
// in the suite's order, applying -smoke and the -*-n overrides.
func selectScenarios(o *options) ([]*scenario, error) {
	want := map[string]bool{}
	for _, n := range o.scenarios {
		if n == "all" {
			for _, s := range scenarios {
				want[s.name] = true
			}
			continue
		}
		if !slices.Contains(scenarioNames(), n) {
			return nil, fmt.Errorf("unknown scenario %q: want all or %s", n, strings.Join(scenarioNames(), ", "))
		}
		want[n] = true
	}
	var out []*scenario
	for _, s := range scenarios {
		if !want[s.name] {
			continue
		}
		c := *s
		if o.smoke {
			c.conns, c.counts = c.smokeC, c.smokeN
		}
		override := map[kind]string{release: o.relN, parkedCap: o.parkedN, atOnceCap: o.atOnceN, tunnelCap: o.tunnelN,
			scale: o.scaleN}[c.kind]
		if override != "" {
			ns, err := parseCounts(override)
			if err != nil {
				return nil, err
			}
			c.counts = ns
		}
		out = append(out, &c)
	}
	return out, nil
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad count %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// layout is a CPU placement for one pass over the scenarios.
type layout struct {
	Name string `json:"name"`
	// LoadCPUs pins the load generator and the upstream, ProxyCPUs the
	// proxy under test (taskset -c lists); empty means unpinned.
	LoadCPUs  string `json:"load_cpus,omitempty"`
	ProxyCPUs string `json:"proxy_cpus,omitempty"`
	Desc      string `json:"description"`
}

var layouts = map[string]layout{
	"pinned": {Name: "pinned", LoadCPUs: "0", ProxyCPUs: "1",
		Desc: "load generator + upstream pinned to CPU 0, proxy pinned to CPU 1 (taskset)"},
	"float": {Name: "float", Desc: "no pinning: every process may run on any CPU"},
}

func selectLayouts(o *options) ([]layout, error) {
	spec := o.layouts
	if spec == "" {
		spec = "pinned,float"
		if o.smoke {
			spec = "pinned"
		}
	}
	var out []layout
	for n := range strings.SplitSeq(spec, ",") {
		l, ok := layouts[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("unknown layout %q: want pinned or float", n)
		}
		if l.ProxyCPUs != "" && runtime.NumCPU() < 2 {
			return nil, fmt.Errorf("layout %s needs 2 CPUs, this machine has %d", l.Name, runtime.NumCPU())
		}
		out = append(out, l)
	}
	return out, nil
}

// cpuList parses a taskset list of single CPUs ("0" or "0,1"); "" is nil
// (all CPUs).
func cpuList(s string) []int {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, n)
		}
	}
	return out
}
