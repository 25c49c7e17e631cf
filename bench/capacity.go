package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// settle is how long a process is left alone before its memory is read,
// so the figure is not caught mid-burst (buffers of the connections just
// accepted, a collection about to run).
const settle = time.Second

// runParkedCapacity measures agimo's RSS and goroutines per parked
// request: a fresh agimo per measurement, so the baseline is an idle
// process and not one that has just served a throughput run.
func (e *env) runParkedCapacity(ctx context.Context, sc *scenario) error {
	unpin, err := e.pinClient()
	if err != nil {
		return err
	}
	defer unpin()
	if _, err := e.s.cluster.setReady(ctx, "cold", false); err != nil {
		return err
	}
	// One socket per parked request in agimo, one here.
	once := e.parkedOnce
	if sc.kind == atOnceCap {
		once = e.parkedAtOnce
	}
	return e.capacityReps(ctx, sc, []string{tAgimo}, 1, once)
}

// runTunnelCapacity measures RSS per idle WebSocket tunnel, for agimo and
// for nginx as a reference.
func (e *env) runTunnelCapacity(ctx context.Context, sc *scenario) error {
	unpin, err := e.pinClient()
	if err != nil {
		return err
	}
	defer unpin()
	ts := []string{tAgimo}
	if e.s.nginxBin != "" {
		ts = append(ts, tNginx)
	}
	// An idle tunnel holds its two sockets in both (Agimo splices only
	// bulk, so no pipe waits on an idle direction). Both are measured at
	// the same count.
	return e.capacityReps(ctx, sc, ts, 2, e.tunnelsOnce)
}

// fdReserve is the descriptors a process needs besides the items
// counted: listeners, the API server connection, log files.
const fdReserve = 500

// fitCount returns the largest count not above n for which a process
// holding fdsPer descriptors per item stays within limit, rounded down
// to a thousand when it must shrink.
func fitCount(n, fdsPer int, limit uint64) int {
	most := (int(min(limit, 1<<30)) - fdReserve) / fdsPer
	if n <= most {
		return n
	}
	if most >= 1000 {
		return most / 1000 * 1000
	}
	return max(most, 1)
}

// capacityReps runs once for every repetition, count and target, the
// targets rotated per repetition like the throughput runs.
func (e *env) capacityReps(ctx context.Context, sc *scenario, ts []string, fdsPer int,
	once func(ctx context.Context, target string, n int, hp *heapProfile) CapacityRun) error {
	counts := make([]int, len(sc.counts))
	for i, want := range sc.counts {
		counts[i] = fitCount(want, fdsPer, e.s.fdLimit)
		if counts[i] != want {
			note := fmt.Sprintf("%s: %s requested, measured at %s: the open file limit is %d and cannot be raised here "+
				"(raising a hard RLIMIT_NOFILE needs CAP_SYS_RESOURCE), and each item holds %d descriptor(s) in the proxy",
				sc.name, fmtCount(want), fmtCount(counts[i]), e.s.fdLimit, fdsPer)
			fmt.Fprintln(os.Stderr, "bench:", note)
			e.s.res.Notes = append(e.s.res.Notes, note)
		}
	}
	failed := 0
	for rep := range e.s.o.reps {
		for ci, n := range counts {
			for i := range ts {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				t := ts[(i+rep)%len(ts)]
				r := once(ctx, t, n, nil)
				r.Layout, r.Scenario, r.Rep = e.lay.Name, sc.name, rep
				if n != sc.counts[ci] {
					r.Requested = sc.counts[ci]
				}
				e.s.res.Capacity = append(e.s.res.Capacity, r)
				if r.Error != "" {
					failed++
					fmt.Fprintf(os.Stderr, "bench: %s %s %s n=%d rep %d FAILED: %s\n", e.lay.Name, sc.name, t, n, rep+1, firstLine(r.Error))
					continue
				}
				fmt.Fprintf(os.Stderr, "bench: %s %s %s n=%d rep %d  %.1f KiB each, %.2f goroutines each\n", e.lay.Name, sc.name, t, n, rep+1,
					r.PerItem()/1024, (r.GoroutinesAfter-r.GoroutinesBefore)/float64(max(r.Opened, 1)))
			}
		}
	}
	if e.s.o.profile && ctx.Err() == nil {
		// One more run at the largest count with the profiling copy of
		// agimo, for its heap and goroutine profiles; not counted.
		n := slices.Max(counts)
		hp := &heapProfile{dir: e.s.profileDir(), name: fmt.Sprintf("%s-%s-%d", e.lay.Name, sc.name, n)}
		r := once(ctx, tAgimo, n, hp)
		e.s.res.Profiles = append(e.s.res.Profiles, ProfileRun{Layout: e.lay.Name, Scenario: sc.name, Conns: n,
			Rate: float64(r.Opened), Report: hp.report, Error: r.Error})
		fmt.Fprintf(os.Stderr, "bench: %s %s n=%d profiled: %s\n", e.lay.Name, sc.name, n, hp.report)
	}
	if failed > 0 {
		return fmt.Errorf("%d of its runs failed", failed)
	}
	return nil
}

func (e *env) parkedOnce(ctx context.Context, _ string, n int, hp *heapProfile) CapacityRun {
	return e.parkN(ctx, n, hp, "parked", func(addr string, req []byte) ([]net.Conn, error) {
		return openMany(ctx, addr, n, 256, req)
	})
}

// parkedAtOnce parks n requests whose clients all arrive at once: agimo
// accepts and reads them in one burst, as a crowd after an outage or a
// deploy sends them, instead of 256 at a time.
func (e *env) parkedAtOnce(ctx context.Context, _ string, n int, hp *heapProfile) CapacityRun {
	return e.parkN(ctx, n, hp, "parked-at-once", func(addr string, req []byte) ([]net.Conn, error) {
		return openAtOnce(ctx, addr, n, req)
	})
}

// parkN measures a fresh agimo idle and with n requests parked, opened by
// open.
func (e *env) parkN(ctx context.Context, n int, hp *heapProfile, name string,
	open func(addr string, req []byte) ([]net.Conn, error)) (r CapacityRun) {
	r = CapacityRun{Target: tAgimo, N: n}
	a, err := e.startCapacityAgimo(fmt.Sprintf("agimo-%s-%d", name, n), hp)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer a.stop()
	if err := e.agimoMemory(a, &r, false); err != nil {
		r.Error = err.Error()
		return r
	}
	conns, err := open(a.addr, getRequest(hostCold, "/small"))
	defer closeAll(conns) // before a.stop: agimo need not answer them
	r.Opened = len(conns)
	if err != nil {
		r.Error = fmt.Sprintf("open parked requests: %v", err)
		return r
	}
	if _, err := a.waitMetric(parkedSeries, float64(n), 30*time.Second+time.Duration(n)*time.Millisecond); err != nil {
		r.Error = err.Error()
		return r
	}
	if err := e.agimoMemory(a, &r, true); err != nil {
		r.Error = err.Error()
	}
	hp.capture(a)
	return r
}

// startCapacityAgimo starts a fresh agimo; with hp, serving pprof.
func (e *env) startCapacityAgimo(name string, hp *heapProfile) (*agimoProc, error) {
	if hp == nil {
		return startAgimo(e.s.agimoBin, e.dir, name, e.lay.ProxyCPUs, e.s.cluster.kubeconfig, e.agimoConf(), false)
	}
	return startAgimo(e.s.agimoBin, e.dir, name+"-pprof", e.lay.ProxyCPUs, e.s.cluster.kubeconfig, e.agimoConf(), true)
}

// agimoMemory fills r's before or after figures after the settle time.
func (e *env) agimoMemory(a *agimoProc, r *CapacityRun, after bool) error {
	time.Sleep(settle)
	rss, err := rssBytes(a.p.pid())
	if err != nil {
		return err
	}
	m, err := a.scrape()
	if err != nil {
		return err
	}
	g, heap, stack := m["go_goroutines"], m["go_memstats_heap_inuse_bytes"], m["go_memstats_stack_inuse_bytes"]
	if after {
		r.RSSAfter, r.GoroutinesAfter, r.HeapAfter, r.StackAfter = rss, g, heap, stack
	} else {
		r.RSSBefore, r.GoroutinesBefore, r.HeapBefore, r.StackBefore = rss, g, heap, stack
	}
	return nil
}

// tunnelsOnce opens n WebSockets through a fresh instance of the target
// to the echo upstream and leaves them idle.
func (e *env) tunnelsOnce(ctx context.Context, t string, n int, hp *heapProfile) (r CapacityRun) {
	r = CapacityRun{Target: t, N: n}
	var (
		addr string
		pids func() []int
		a    *agimoProc
	)
	switch t {
	case tAgimo:
		var err error
		if a, err = e.startCapacityAgimo(fmt.Sprintf("agimo-tunnels-%d", n), hp); err != nil {
			r.Error = err.Error()
			return r
		}
		defer a.stop()
		addr, pids = a.addr, func() []int { return []int{a.p.pid()} }
	case tNginx:
		ng, err := e.startNginx(fmt.Sprintf("nginx-tunnels-%d", n))
		if err != nil {
			r.Error = err.Error()
			return r
		}
		defer ng.stop()
		addr, pids = ng.addr, ng.pids
	}
	measure := func(after bool) error {
		fds := 0
		for _, pid := range pids() {
			n, err := fdCount(pid)
			if err != nil {
				return err
			}
			fds += n
		}
		if after {
			r.FDsAfter = fds
		} else {
			r.FDsBefore = fds
		}
		if a != nil {
			return e.agimoMemory(a, &r, after)
		}
		time.Sleep(settle)
		var sum int64
		for _, pid := range pids() {
			v, err := rssBytes(pid)
			if err != nil {
				return err
			}
			sum += v
		}
		if after {
			r.RSSAfter = sum
		} else {
			r.RSSBefore = sum
		}
		return nil
	}
	if err := measure(false); err != nil {
		r.Error = err.Error()
		return r
	}
	conns, err := openMany(ctx, addr, n, 256, wsHandshake(hostWeb, "/ws"))
	defer closeAll(conns)
	if err == nil {
		err = awaitSwitch(conns)
	}
	r.Opened = len(conns)
	if err != nil {
		r.Error = fmt.Sprintf("open tunnels: %v", err)
		return r
	}
	if err := measure(true); err != nil {
		r.Error = err.Error()
	}
	if a != nil {
		hp.capture(a)
	}
	return r
}

// awaitSwitch reads every connection's handshake answer and fails unless
// all are 101 Switching Protocols.
func awaitSwitch(conns []net.Conn) error {
	errs := make([]error, len(conns))
	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512) // bounds goroutines, not concurrency of the proxy
	for i, c := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = readSwitch(c, deadline)
		})
	}
	wg.Wait()
	var bad int
	var first error
	for _, err := range errs {
		if err != nil {
			bad++
			if first == nil {
				first = err
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d handshakes failed, first: %w", bad, len(conns), first)
	}
	return nil
}

// readSwitch reads a response head and checks for a 101. The head must
// end within 4 KiB; a WebSocket frame after it would be a protocol error
// here, as the echo server never speaks first.
func readSwitch(c net.Conn, deadline time.Time) error {
	c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 4096)
	for !bytes.Contains(buf, []byte("\r\n\r\n")) {
		if len(buf) == cap(buf) {
			return errors.New("response head over 4 KiB")
		}
		m, err := c.Read(buf[len(buf):cap(buf)])
		if err != nil {
			return fmt.Errorf("read handshake answer: %w", err)
		}
		buf = buf[:len(buf)+m]
	}
	line, _, _ := bytes.Cut(buf, []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 101")) {
		return fmt.Errorf("handshake answered %q", line)
	}
	return nil
}
