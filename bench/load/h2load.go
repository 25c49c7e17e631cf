package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// H2Load runs HTTP/2 load with h2load (Debian's nghttp2-client): Conns
// connections, Streams concurrent streams on each, for Warmup then Dur
// (h2load -D, --warm-up-time). An https:// target gets h2 by ALPN, an
// http:// one h2c with prior knowledge (h2load's default for http). The
// :authority and the TLS server name are Host, the connection goes to the
// URL's address (--connect-to). h2load itself is C and driven by one event
// loop (-t 1), so the load generator costs less than a Go client would.
//
// h2load's per-request log (--log-file: start µs since the epoch, status,
// elapsed µs; written for the measured phase only) gives the latency
// histogram; its summary the transport errors. Rate is not supported.
func H2Load(ctx context.Context, cfg Config) (*Result, error) {
	cfg.Mode = ModeH2
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %q: want https://host:port/path (h2) or http://… (h2c)", cfg.URL)
	}
	if cfg.Rate > 0 {
		return nil, errors.New("h2 mode: -rate is not supported (h2load's own rate is per connection and per second)")
	}
	bin, err := exec.LookPath("h2load")
	if err != nil {
		return nil, errors.New("h2load not found: apt-get install nghttp2-client (hack/tools.sh)")
	}
	if cfg.Host == "" {
		cfg.Host = u.Host
	}
	cfg.Conns, cfg.Streams = max(cfg.Conns, 1), max(cfg.Streams, 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	logf, err := os.CreateTemp("", "agimo-bench-h2load-*.log")
	if err != nil {
		return nil, fmt.Errorf("h2load log: %w", err)
	}
	logf.Close()
	defer os.Remove(logf.Name())
	ms := func(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) + "ms" }
	args := []string{"-c", strconv.Itoa(cfg.Conns), "-m", strconv.Itoa(cfg.Streams), "-t", "1",
		"-D", ms(cfg.Dur), "--warm-up-time=" + ms(cfg.Warmup), "-N", ms(cfg.Timeout),
		"--connect-to=" + u.Host, "--log-file=" + logf.Name(),
		u.Scheme + "://" + cfg.Host + u.RequestURI()}
	// Bounded even if h2load hangs.
	cctx, cancel := context.WithTimeout(ctx, cfg.Warmup+cfg.Dur+cfg.Timeout+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	now := time.Now()
	c := &clock{start: now, measureFrom: now.Add(cfg.Warmup), end: now.Add(cfg.Warmup + cfg.Dur)}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("h2load: %w", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var started bool // written by the marker goroutine, read after wg.Wait
	if cfg.Phase != nil {
		wg.Go(func() { started = markStart(cfg.Phase, c, done) })
	}
	err = cmd.Wait()
	close(done)
	wg.Wait()
	if started {
		cfg.Phase(false)
	}
	if err != nil {
		return nil, fmt.Errorf("h2load %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	r := &Result{Mode: cfg.Mode, URL: cfg.URL, Host: cfg.Host, Conns: cfg.Conns, Seconds: cfg.Dur.Seconds(),
		Latency: NewHist(), ErrKinds: map[string]int64{}}
	lb, err := os.ReadFile(logf.Name())
	if err != nil {
		return nil, fmt.Errorf("h2load log: %w", err)
	}
	parseH2LoadLog(lb, r)
	parseH2LoadSummary(out.String(), r)
	return r, nil
}

// parseH2LoadLog adds the log's requests to r: 2xx as ops with their
// latency, other statuses as errors. Status 0 is a stream still open when
// h2load stopped: neither.
func parseH2LoadLog(b []byte, r *Result) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			continue
		}
		status, err1 := strconv.Atoi(f[1])
		us, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || status == 0 {
			continue
		}
		if status < 200 || status > 299 {
			r.Errors++
			r.ErrKinds[fmt.Sprintf("status %d", status)]++
			continue
		}
		r.Ops++
		r.Latency.Record(time.Duration(us) * time.Microsecond)
	}
}

var (
	h2Requests = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, \d+ failed, (\d+) errored, (\d+) timeout`)
	h2Data     = regexp.MustCompile(`traffic: .* \((\d+)\) data`)
)

// parseH2LoadSummary adds the summary's transport errors and data bytes.
func parseH2LoadSummary(out string, r *Result) {
	if m := h2Requests.FindStringSubmatch(out); m != nil {
		for i, kind := range []string{"h2load: errored", "h2load: timeout"} {
			if n, _ := strconv.ParseInt(m[i+1], 10, 64); n > 0 {
				r.Errors += n
				r.ErrKinds[kind] += n
			}
		}
	} else {
		r.ErrKinds["h2load printed no request summary"]++
	}
	if m := h2Data.FindStringSubmatch(out); m != nil {
		r.Bytes, _ = strconv.ParseInt(m[1], 10, 64)
	}
}
