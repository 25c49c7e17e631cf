package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agimo/agimo/bench/load"
)

var parkedSeries = `agimo_parked_requests{host="` + hostCold + `"}`

// runRelease parks N requests on the cold host and releases them with one
// real EndpointSlice update, for each N, reps times.
func (e *env) runRelease(ctx context.Context, sc *scenario) error {
	unpin, err := e.pinClient()
	if err != nil {
		return err
	}
	defer unpin()
	failed := 0
	for rep := range e.s.o.reps {
		for _, n := range sc.counts {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r := e.releaseOnce(ctx, n, rep, "")
			if r.Error == "" {
				// The same n requests at once, with nothing parked: to the
				// upstream alone and through agimo to a ready service.
				// Answering n requests takes this long on this machine
				// anyway; the release is judged against it.
				if r.BurstDirectMS, err = burstOnce(ctx, e.up.httpAddr, hostHTTP, n); err != nil {
					r.Error = fmt.Sprintf("direct burst: %v", err)
				} else if r.BurstAgimoMS, err = burstOnce(ctx, e.agimo.addr, hostHTTP, n); err != nil {
					r.Error = fmt.Sprintf("burst through agimo: %v", err)
				}
			}
			e.s.res.Releases = append(e.s.res.Releases, r)
			if r.Error != "" {
				failed++
				fmt.Fprintf(os.Stderr, "bench: %s release n=%d rep %d FAILED: %s\n", e.lay.Name, n, rep+1, firstLine(r.Error))
				continue
			}
			fmt.Fprintf(os.Stderr, "bench: %s release n=%d rep %d  answered %d  p50 %s  last %s  (API call %.1fms; burst direct %.0fms, via agimo %.0fms)\n",
				e.lay.Name, n, rep+1, r.Answered, load.Fmt(r.Latency.Quantile(.5)), load.Fmt(r.Latency.Max()), r.APICallMS,
				r.BurstDirectMS, r.BurstAgimoMS)
		}
	}
	if e.s.o.profile && ctx.Err() == nil && len(sc.counts) > 0 {
		// One more release of the largest count, under perf, not counted.
		n := slices.Max(sc.counts)
		name := fmt.Sprintf("%s-release-%d", e.lay.Name, n)
		r := e.releaseOnce(ctx, n, -1, name)
		e.s.res.Profiles = append(e.s.res.Profiles, ProfileRun{Layout: e.lay.Name, Scenario: "release", Conns: n,
			Rate: float64(r.Answered), Report: r.Profile, Error: r.Error})
		fmt.Fprintf(os.Stderr, "bench: %s release n=%d profiled: %s\n", e.lay.Name, n, r.Profile)
	}
	if failed > 0 {
		return fmt.Errorf("%d of its runs failed", failed)
	}
	return nil
}

// pinClient puts this process, which is the client in the release and
// capacity scenarios, on the load generator's CPUs for the layout.
func (e *env) pinClient() (func(), error) {
	if e.lay.LoadCPUs == "" {
		return func() {}, nil
	}
	if err := pinSelf(cpuList(e.lay.LoadCPUs)); err != nil {
		return nil, err
	}
	return func() {
		if err := pinSelf(nil); err != nil {
			fmt.Fprintln(os.Stderr, "bench: unpin:", err)
		}
	}, nil
}

// releaseOnce parks n requests and releases them. With profile set (a
// file name stem), agimo is recorded with perf from just before the event.
func (e *env) releaseOnce(ctx context.Context, n, rep int, profile string) (r ReleaseRun) {
	r = ReleaseRun{Layout: e.lay.Name, N: n, Rep: rep, Latency: load.NewHist()}
	fail := func(err error) ReleaseRun { r.Error = err.Error(); return r }
	a := e.agimo
	if _, err := e.s.cluster.setReady(ctx, "cold", false); err != nil {
		return fail(err)
	}
	probe, err := parkProbe(ctx, a)
	if err != nil {
		return fail(err)
	}
	req := getRequest(hostCold, "/small")
	rest, err := openMany(ctx, a.addr, n-1, 256, req)
	conns := append([]net.Conn{probe}, rest...)
	defer closeAll(conns)
	if err != nil {
		return fail(fmt.Errorf("open parked requests: %w", err))
	}
	// Every reader is blocked in its read before the event, so that the
	// release is timed, not the start of 10,000 goroutines.
	type answer struct {
		at     time.Time
		status int
		err    error
	}
	answers := make([]answer, len(conns))
	deadline := time.Now().Add(time.Minute + time.Duration(n)*time.Millisecond)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			st, err := readResponse(c, deadline)
			answers[i] = answer{time.Now(), st, err}
		})
	}
	if _, err := a.waitMetric(parkedSeries, float64(n), 30*time.Second+time.Duration(n)*time.Millisecond); err != nil {
		closeAll(conns) // unblocks the readers
		wg.Wait()
		return fail(fmt.Errorf("waiting for %d parked: %w", n, err))
	}
	var prof *perfRecord
	if profile != "" {
		prof = startPerf(a.p.pid(), e.s.profileDir(), profile, 2*time.Second)
		time.Sleep(300 * time.Millisecond) // perf attaches to every thread first
		defer func() { r.Profile = prof.finish() }()
	}
	sent, err := e.s.cluster.setReady(ctx, "cold", true)
	r.APICallMS = float64(time.Since(sent).Microseconds()) / 1000
	if err != nil {
		closeAll(conns)
		wg.Wait()
		return fail(err)
	}
	wg.Wait()
	for _, a := range answers {
		switch {
		case a.err != nil:
			r.Errors++
			if len(r.ErrKinds) < 5 {
				r.ErrKinds = append(r.ErrKinds, a.err.Error())
			}
		case a.status != 200:
			r.Errors++
			if len(r.ErrKinds) < 5 {
				r.ErrKinds = append(r.ErrKinds, fmt.Sprintf("status %d", a.status))
			}
		default:
			r.Answered++
			r.Latency.Record(a.at.Sub(sent))
		}
	}
	if r.Errors > 0 {
		r.Error = fmt.Sprintf("%d of %d requests failed: %v", r.Errors, n, r.ErrKinds)
	}
	return r
}

// parkProbe sends one request to the cold host and returns its connection
// once the proxy counts it parked. Right after the EndpointSlice turned
// unready the proxy may not know yet and answer it; then it tries again,
// so that no request of the N goes through before the event. The answer
// is looked for with poll(2), not read, so a parked request's eventual
// response stays in the socket for the release's reader.
func parkProbe(ctx context.Context, a *agimoProc) (net.Conn, error) {
	req := getRequest(hostCold, "/small")
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) && ctx.Err() == nil {
		c, err := dialLoopback(ctx, a.addr)
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		if _, err := c.Write(req); err != nil {
			c.Close()
			return nil, fmt.Errorf("probe: %w", err)
		}
		for attempt := time.Now(); time.Since(attempt) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
			if m, err := a.scrape(); err == nil && m[parkedSeries] >= 1 {
				return c, nil
			}
			if readable(c) {
				break // answered (or closed): the proxy still saw it ready
			}
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("probe: no request parked within 30s")
}

// readable reports whether c has input (or a hang-up) waiting, without
// reading it.
func readable(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var ready bool
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		ready = err == nil && n > 0
	})
	return ready
}

// burstOnce opens n connections to addr, and once a reader waits on each,
// sends one GET on every one of them as fast as two writers can; it
// returns the time from the first write to the last response.
func burstOnce(ctx context.Context, addr, host string, n int) (float64, error) {
	conns, err := openMany(ctx, addr, n, 256, nil)
	defer closeAll(conns)
	if err != nil {
		return 0, fmt.Errorf("open: %w", err)
	}
	deadline := time.Now().Add(time.Minute + time.Duration(n)*time.Millisecond)
	var (
		mu    sync.Mutex // guards last, errs
		last  time.Time
		errs  int
		first error
		wg    sync.WaitGroup
	)
	for _, c := range conns {
		wg.Go(func() {
			st, err := readResponse(c, deadline)
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err == nil && st != 200 {
				err = fmt.Errorf("status %d", st)
			}
			if err != nil {
				if errs++; first == nil {
					first = err
				}
				return
			}
			if now.After(last) {
				last = now
			}
		})
	}
	// Let every reader block in its read, as in the release.
	time.Sleep(200*time.Millisecond + time.Duration(n)*20*time.Microsecond)
	req := getRequest(host, "/small")
	start := time.Now()
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			for i := w; i < len(conns); i += 2 {
				conns[i].Write(req) // a failure shows as the read's error
			}
		})
	}
	writers.Wait()
	wg.Wait()
	if errs > 0 {
		return 0, fmt.Errorf("%d of %d failed, first: %w", errs, n, first)
	}
	return float64(last.Sub(start).Microseconds()) / 1000, nil
}
