package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/agimo/agimo/bench/report"
)

// The scale scenario (issue 13) starts agimo with N configured services,
// each a Service with a ready EndpointSlice, half of them on wildcard
// hosts, and measures what N costs: the time from process start to
// /readyz, RSS per configured service, and keep-alive CPU per request of
// http-small against one exact and one wildcard host, against an agimo
// configured with the first count (1 by default) in the same repetition.
//
// Each count has a namespace of its own holding exactly its N Services:
// with several services agimo watches every Service of a namespace, so a
// shared namespace would charge the smaller counts for the larger's.

// scaleNamespace is the namespace of the count n.
func scaleNamespace(n int) string { return fmt.Sprintf("%s-scale-%d", benchNS, n) }

// scaleService is the name of service i of a scale namespace.
func scaleService(i int) string { return fmt.Sprintf("s%d", i) }

// scaleServices are n services all routed to addr: even ones on the exact
// host sI.bench, odd ones on the wildcard *.sI.bench.
func scaleServices(n int, addr string) []agimoService {
	svcs := make([]agimoService, n)
	for i := range svcs {
		host := scaleService(i) + ".bench"
		if i%2 == 1 {
			host = "*." + host
		}
		svcs[i] = agimoService{Host: host, Service: scaleService(i), Address: addr}
	}
	return svcs
}

// scaleHosts are the Hosts the load is sent to with n services: the last
// exact host, and a name under the last wildcard ("" if n has none).
func scaleHosts(n int) (exact, wildcard string) {
	last := n - 1
	if last%2 == 1 {
		wildcard = "w." + scaleService(last) + ".bench"
		last--
	} else if last > 0 {
		wildcard = "w." + scaleService(last-1) + ".bench"
	}
	return scaleService(last) + ".bench", wildcard
}

// ensureScaleServices creates ns with n Services, each with a ready
// EndpointSlice, at most par API calls at a time; objects already there
// are kept, so a second run on the same cluster is quick.
func (c *cluster) ensureScaleServices(ctx context.Context, ns string, n, par int) error {
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(par)
	for i := range n {
		g.Go(func() error {
			name := scaleService(i)
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				// Headless: 10,000 cluster IPs would not fit the local
				// control plane's service range, and agimo dials the
				// address override, not a cluster IP.
				Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{
					Name: "http", Port: servicePort, TargetPort: intstr.FromInt32(targetPort), Protocol: corev1.ProtocolTCP,
				}}},
			}
			if _, err := c.client.CoreV1().Services(ns).Create(gctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create service %s/%s: %w", ns, name, err)
			}
			_, err := c.client.DiscoveryV1().EndpointSlices(ns).Create(gctx, benchSlice(name, true), metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create endpointslice %s/%s: %w", ns, name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// runScale measures every count reps times, the counts rotated per
// repetition like the targets of the throughput runs.
func (e *env) runScale(ctx context.Context, sc *scenario) error {
	for _, n := range sc.counts {
		t0 := time.Now()
		if err := e.s.cluster.ensureScaleServices(ctx, scaleNamespace(n), n, 32); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: scale: %s Services and EndpointSlices in %s (%.1fs)\n",
			fmtCount(n), scaleNamespace(n), time.Since(t0).Seconds())
	}
	failed := 0
	for rep := range e.s.o.reps {
		for i := range sc.counts {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n := sc.counts[(i+rep)%len(sc.counts)]
			r := e.scaleOnce(ctx, n, rep)
			r.Layout = e.lay.Name
			e.s.res.Scale = append(e.s.res.Scale, r)
			if r.Error != "" {
				failed++
				fmt.Fprintf(os.Stderr, "bench: %s scale n=%d rep %d FAILED: %s\n", e.lay.Name, n, rep+1, firstLine(r.Error))
				continue
			}
			wild := "no wildcard host"
			if r.CPUWildcard > 0 {
				wild = fmt.Sprintf("%.1f wildcard", r.CPUWildcard)
			}
			fmt.Fprintf(os.Stderr, "bench: %s scale n=%d rep %d  ready in %.2fs, idle %.1fs later  RSS %.1f MiB  CPU %.1f µs/req exact, %s\n",
				e.lay.Name, n, rep+1, r.ReadyS, r.QuietS, float64(r.RSS)/(1<<20), r.CPUExact, wild)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of its runs failed", failed)
	}
	return nil
}

// scaleOnce starts a fresh agimo with n services, times it to /readyz,
// reads its RSS once settled, and runs http-small against an exact and a
// wildcard host.
func (e *env) scaleOnce(ctx context.Context, n, rep int) (r ScaleRun) {
	r = ScaleRun{N: n, Rep: rep}
	conf := agimoConfig(scaleNamespace(n), scaleServices(n, e.up.httpAddr))
	start := time.Now()
	a, err := launchAgimo(e.s.agimoBin, e.dir, fmt.Sprintf("agimo-scale-%d", n), e.lay.ProxyCPUs, e.s.cluster.kubeconfig, conf, false)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer a.stop()
	if err := a.waitReady(time.Minute + time.Duration(n)*10*time.Millisecond); err != nil {
		r.Error = err.Error()
		return r
	}
	r.ReadyS = time.Since(start).Seconds()
	// What a fresh process still does after /readyz (its start-up garbage
	// collected, 10,000 services' informer events settling) must not land
	// in the first host's window only: wait until it is idle.
	r.QuietS = waitQuiet(a.p.pid(), quietMax)
	time.Sleep(settle)
	if r.RSS, err = rssBytes(a.p.pid()); err != nil {
		r.Error = err.Error()
		return r
	}
	sc := scaleLoad(e.s.o.smoke)
	exact, wild := scaleHosts(n)
	pids := func() []int { return []int{a.p.pid()} }
	type hostLoad struct {
		host     string
		cpu, rps *float64
	}
	hosts := []hostLoad{{exact, &r.CPUExact, &r.RateExact}, {wild, &r.CPUWildcard, &r.RateWildcard}}
	if rep%2 == 1 {
		// Alternate which host goes first, so an effect of the order
		// shows as spread rather than as a difference between the hosts.
		hosts[0], hosts[1] = hosts[1], hosts[0]
	}
	for _, h := range hosts {
		if h.host == "" {
			continue
		}
		run := e.measure(ctx, sc, target{name: tAgimo, addr: a.addr, pids: pids, host: h.host}, sc.conns[0], rep, "")
		if run.Error != "" {
			r.Error = fmt.Sprintf("http-small to %s: %s", h.host, run.Error)
			return r
		}
		if run.Result.Errors > 0 {
			r.Error = fmt.Sprintf("http-small to %s: %d errors: %v", h.host, run.Result.Errors, run.Result.ErrKinds)
			return r
		}
		u := unitOf("http-small")
		if *h.cpu, *h.rps = u.cpuPer(&run), u.rate(&run); math.IsNaN(*h.cpu) {
			r.Error = fmt.Sprintf("http-small to %s: no CPU figure (the load generator marked no measured window)", h.host)
			return r
		}
	}
	if e.s.o.profile && rep == 0 && ctx.Err() == nil {
		e.profileScale(ctx, sc, a, n, exact)
	}
	return r
}

// profileScale records one more run to n's exact host under perf, apart
// from the measured ones, for the profiles of -profile.
func (e *env) profileScale(ctx context.Context, sc *scenario, a *agimoProc, n int, host string) {
	name := fmt.Sprintf("%s-scale-%d-exact", e.lay.Name, n)
	t := target{name: tAgimo, addr: a.addr, pids: func() []int { return []int{a.p.pid()} }, host: host}
	run := e.measure(ctx, sc, t, sc.conns[0], -1, name)
	p := ProfileRun{Layout: e.lay.Name, Scenario: fmt.Sprintf("scale-%d", n), Conns: sc.conns[0], Report: run.Profile, Error: run.Error}
	if run.Result != nil {
		p.Rate = unitOf("http-small").rate(&run)
	}
	e.s.res.Profiles = append(e.s.res.Profiles, p)
	fmt.Fprintf(os.Stderr, "bench: %s scale n=%d profiled: %s\n", e.lay.Name, n, run.Profile)
}

// quietMax bounds the wait for a started agimo to become idle.
const quietMax = 15 * time.Second

// waitQuiet waits until pid used under 2% of a CPU over a 500 ms window,
// for at most max, and returns how long that took. A process that
// cannot be read counts as quiet: the measurement that follows reports it.
func waitQuiet(pid int, max time.Duration) float64 {
	const window, idle = 500 * time.Millisecond, 0.02
	start := time.Now()
	prev, err := cpuSeconds(pid)
	for err == nil && time.Since(start) < max {
		time.Sleep(window)
		var cur float64
		if cur, err = cpuSeconds(pid); err != nil {
			break
		}
		if cur-prev < idle*window.Seconds() {
			break
		}
		prev = cur
	}
	return time.Since(start).Seconds()
}

// scaleLoad is the http-small scenario at its first connection count.
func scaleLoad(smoke bool) *scenario {
	for _, s := range scenarios {
		if s.name == "http-small" {
			c := *s
			if smoke {
				c.conns = c.smokeC
			}
			c.conns = c.conns[:1]
			return &c
		}
	}
	panic("no http-small scenario")
}

// ScaleRun is one agimo started with N configured services.
type ScaleRun struct {
	Layout string  `json:"layout"`
	N      int     `json:"n"`
	Rep    int     `json:"rep"`
	ReadyS float64 `json:"ready_s"` // process start to /readyz answering 200
	// QuietS is how long after /readyz the process took to become idle
	// (quietMax if it never did), before anything was measured.
	QuietS float64 `json:"quiet_s"`
	RSS    int64   `json:"rss_bytes"`
	// Agimo's CPU µs per request and requests per second of http-small
	// to an exact host and to a wildcard one (0: none configured).
	CPUExact     float64 `json:"cpu_us_per_req_exact"`
	CPUWildcard  float64 `json:"cpu_us_per_req_wildcard"`
	RateExact    float64 `json:"req_per_s_exact"`
	RateWildcard float64 `json:"req_per_s_wildcard"`
	Error        string  `json:"error,omitempty"`
}

// scaleFigures are a layout's scale runs arranged by count and
// repetition, for per-repetition ratios against the baseline count.
type scaleFigures struct {
	Layout string
	Counts []int // in order of first appearance; the smallest is the baseline
	runs   map[int][]*ScaleRun
	reps   int
}

func groupScale(rs []ScaleRun, reps int) []*scaleFigures {
	var out []*scaleFigures
	idx := map[string]*scaleFigures{}
	for i := range rs {
		r := &rs[i]
		g, ok := idx[r.Layout]
		if !ok {
			g = &scaleFigures{Layout: r.Layout, runs: map[int][]*ScaleRun{}, reps: reps}
			idx[r.Layout] = g
			out = append(out, g)
		}
		if _, ok := g.runs[r.N]; !ok {
			g.Counts = append(g.Counts, r.N)
			g.runs[r.N] = make([]*ScaleRun, reps)
		}
		if r.Rep >= 0 && r.Rep < reps {
			g.runs[r.N][r.Rep] = r
		}
	}
	for _, g := range out {
		slices.Sort(g.Counts)
	}
	return out
}

// fig is f of each repetition's run at n; NaN where missing or failed,
// or where f is not positive (a figure not measured).
func (g *scaleFigures) fig(n int, f func(*ScaleRun) float64) []float64 {
	out := make([]float64, g.reps)
	for i, r := range g.runs[n] {
		if r == nil || r.Error != "" {
			out[i] = math.NaN()
			continue
		}
		out[i] = positive(f(r))
	}
	return out
}

func (g *scaleFigures) base() int { return g.Counts[0] }

// cpuRatio is CPU per request at n (exact or wildcard host) over the
// baseline's to its exact host, per repetition.
func (g *scaleFigures) cpuRatio(n int, wildcard bool) report.Spread {
	f := func(r *ScaleRun) float64 { return r.CPUExact }
	if wildcard {
		f = func(r *ScaleRun) float64 { return r.CPUWildcard }
	}
	return report.Of(report.Ratios(g.fig(n, f), g.fig(g.base(), func(r *ScaleRun) float64 { return r.CPUExact })))
}

// rssPerService is (RSS(n) − RSS(base)) / (n − base), per repetition.
func (g *scaleFigures) rssPerService(n int) report.Spread {
	if n == g.base() {
		return report.Of(nil)
	}
	a, b := g.fig(n, func(r *ScaleRun) float64 { return float64(r.RSS) }), g.fig(g.base(), func(r *ScaleRun) float64 { return float64(r.RSS) })
	out := make([]float64, len(a))
	for i := range a {
		out[i] = (a[i] - b[i]) / float64(n-g.base()) // NaN stays NaN
	}
	return report.Of(out)
}

func scaleTable(gs []*scaleFigures) *report.Table {
	t := &report.Table{
		Header: []string{"layout", "services", "start → /readyz", "RSS", "RSS per service", "CPU per req, exact host", "÷ baseline",
			"CPU per req, wildcard host", "÷ baseline", "req/s, exact host"},
		Right: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true},
	}
	us := func(x float64) string { return report.Num(x) + " µs" }
	kib := func(x float64) string { return report.Num(x/1024) + " KiB" }
	for _, g := range gs {
		for _, n := range g.Counts {
			t.Add(g.Layout, report.Num(float64(n)),
				report.Of(g.fig(n, func(r *ScaleRun) float64 { return r.ReadyS * 1000 })).Format(report.Millis),
				report.Num(report.Of(g.fig(n, func(r *ScaleRun) float64 { return float64(r.RSS) })).Median/(1<<20))+" MiB",
				g.rssPerService(n).Format(kib),
				report.Of(g.fig(n, func(r *ScaleRun) float64 { return r.CPUExact })).Format(us),
				g.cpuRatio(n, false).Format(report.Ratio),
				report.Of(g.fig(n, func(r *ScaleRun) float64 { return r.CPUWildcard })).Format(us),
				g.cpuRatio(n, true).Format(report.Ratio),
				report.Num(report.Of(g.fig(n, func(r *ScaleRun) float64 { return r.RateExact })).Median))
		}
	}
	return t
}
