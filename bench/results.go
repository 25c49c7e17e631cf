package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/agimo/agimo/bench/load"
)

// Results is everything one invocation measured: the JSON file holds it
// whole, and the tables and the plot are computed from it.
type Results struct {
	Started  time.Time        `json:"started"`
	Seconds  float64          `json:"seconds"`
	Command  string           `json:"command"`
	Machine  Machine          `json:"machine"`
	Settings Settings         `json:"settings"`
	Layouts  []layout         `json:"layouts"`
	Runs     []ThroughputRun  `json:"throughput"`
	Releases []ReleaseRun     `json:"release"`
	Capacity []CapacityRun    `json:"capacity"`
	Scale    []ScaleRun       `json:"scale,omitempty"`
	Profiles []ProfileRun     `json:"profiles,omitempty"`
	Failures []ScenarioFailed `json:"failures,omitempty"`
	// Notes say where the run departed from the settings asked for.
	Notes []string `json:"notes,omitempty"`
}

// Settings are the knobs the figures depend on.
type Settings struct {
	Smoke     bool    `json:"smoke"`
	Reps      int     `json:"reps"`
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`
	Profile   bool    `json:"profile"`
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	MemoryGB string `json:"memory"`
	Go       string `json:"go"`
	Nginx    string `json:"nginx,omitempty"`
	Commit   string `json:"agimo_commit,omitempty"`
	// Uncommitted changes to agimo's code in the tree that was built.
	TreeChanges []string `json:"agimo_uncommitted,omitempty"`
}

// ThroughputRun is one load generator run against one target.
type ThroughputRun struct {
	Layout   string `json:"layout"`
	Scenario string `json:"scenario"`
	Conns    int    `json:"conns"`
	Rep      int    `json:"rep"`
	Target   string `json:"target"`
	// Order is the target's position within its repetition: targets are
	// rotated between repetitions so none always runs first.
	Order  int          `json:"order"`
	Result *load.Result `json:"result,omitempty"`
	Error  string       `json:"error,omitempty"`
	// CPU seconds over the measured window: the proxy's (agimo; nginx's
	// master and worker; none for direct) and the upstream's.
	ProxyCPU    float64 `json:"proxy_cpu_s"`
	UpstreamCPU float64 `json:"upstream_cpu_s"`
	// LoadCPU is the load generator's own CPU time; OtherCPU what all
	// other processes of the machine used, over WindowS seconds.
	LoadCPU  float64 `json:"loadgen_cpu_s"`
	OtherCPU float64 `json:"other_cpu_s"`
	WindowS  float64 `json:"window_s"`
	Profile  string  `json:"perf_report,omitempty"`
}

// ProfileRun is an extra agimo run recorded with perf (-profile).
type ProfileRun struct {
	Layout   string  `json:"layout"`
	Scenario string  `json:"scenario"`
	Conns    int     `json:"conns"`
	Rate     float64 `json:"rate"`   // the run's throughput, perf attached
	Report   string  `json:"report"` // path of the text report, or why there is none
	Error    string  `json:"error,omitempty"`
}

// ReleaseRun is one release of N parked requests.
type ReleaseRun struct {
	Layout string `json:"layout"`
	N      int    `json:"n"`
	Rep    int    `json:"rep"`
	// APICall is how long the EndpointSlice update call took; Latency
	// is each response's arrival measured from when the update was sent.
	APICallMS float64    `json:"api_call_ms"`
	Answered  int        `json:"answered"`
	Errors    int        `json:"errors"`
	ErrKinds  []string   `json:"error_samples,omitempty"`
	Latency   *load.Hist `json:"latency"`
	Error     string     `json:"error,omitempty"`
	Profile   string     `json:"perf_report,omitempty"`
	// BurstDirectMS and BurstAgimoMS are the time to answer the same N
	// requests sent at once with nothing parked: straight to the upstream,
	// and through agimo to a ready service (release.go: burstOnce).
	BurstDirectMS float64 `json:"burst_direct_ms,omitempty"`
	BurstAgimoMS  float64 `json:"burst_agimo_ms,omitempty"`
}

// CapacityRun is one memory measurement at N parked requests or tunnels.
type CapacityRun struct {
	Layout   string `json:"layout"`
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	N        int    `json:"n"`
	// Requested is the N asked for, when the file limit forced a smaller N.
	Requested int `json:"requested,omitempty"`
	Rep       int `json:"rep"`
	Opened    int `json:"opened"`
	// RSS of the target's processes, idle and loaded.
	RSSBefore int64 `json:"rss_before_bytes"`
	RSSAfter  int64 `json:"rss_after_bytes"`
	// Open descriptors of the target's processes, idle and loaded
	// (tunnel-capacity).
	FDsBefore int `json:"fds_before,omitempty"`
	FDsAfter  int `json:"fds_after,omitempty"`
	// Agimo only (from its /metrics).
	GoroutinesBefore float64 `json:"goroutines_before,omitempty"`
	GoroutinesAfter  float64 `json:"goroutines_after,omitempty"`
	HeapBefore       float64 `json:"heap_inuse_before_bytes,omitempty"`
	HeapAfter        float64 `json:"heap_inuse_after_bytes,omitempty"`
	StackBefore      float64 `json:"stack_inuse_before_bytes,omitempty"`
	StackAfter       float64 `json:"stack_inuse_after_bytes,omitempty"`
	Error            string  `json:"error,omitempty"`
}

// FDsPerItem is the growth in open descriptors per tunnel.
func (c *CapacityRun) FDsPerItem() float64 {
	if c.Opened == 0 {
		return 0
	}
	return float64(c.FDsAfter-c.FDsBefore) / float64(c.Opened)
}

// PerItem is the RSS growth per parked request or tunnel.
func (c *CapacityRun) PerItem() float64 {
	if c.Opened == 0 {
		return 0
	}
	return float64(c.RSSAfter-c.RSSBefore) / float64(c.Opened)
}

// ScenarioFailed records a scenario that could not run to its end; the
// suite carries on with the next.
type ScenarioFailed struct {
	Layout   string `json:"layout"`
	Scenario string `json:"scenario"`
	Error    string `json:"error"`
}

// describeMachine reads what BENCHMARKS.md reports about the machine.
func describeMachine(root, nginxBin string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		m.MemoryGB = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	if nginxBin != "" {
		var out bytes.Buffer
		cmd := exec.Command(nginxBin, "-v")
		cmd.Stdout, cmd.Stderr = &out, &out
		if cmd.Run() == nil {
			m.Nginx = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out.String()), "nginx version: "))
		}
	}
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	cmd = exec.Command("git", "status", "--porcelain", "--", "main.go", "proxy", "tunnel", "watch", "conf", "go.mod")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasSuffix(line, "_test.go") {
				m.TreeChanges = append(m.TreeChanges, line)
			}
		}
	}
	return m
}
