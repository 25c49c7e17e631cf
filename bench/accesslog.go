package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/agimo/agimo/bench/report"
)

// The access-log scenario (issue 14) measures what Agimo's access log
// costs: http-small, keep-alive, against the suite's agimo (log off, as
// nginx's) and agimo-log, the same binary and config with the log on,
// interleaved in the same repetitions. agimo-log logs every request
// (sample 1) as JSON lines to its stdout, which the suite sends to a file
// in the run's directory (agimo-log.log): what a container runtime does
// with a pod's stdout, so the figure includes the write(2)s into the page
// cache an operator's Agimo pays for, not those of a /dev/null.

// tAgimoLog is agimo with the access log on.
const tAgimoLog = "agimo-log"

// accessLogDesc says what the access-log table shows.
const accessLogDesc = "The same agimo with the access log off and on (`--access-log stdout`, JSON, `--access-log-sample 1`: " +
	"every request), stdout going to a file; proxy CPU per request and throughput, agimo-log / agimo per repetition."

// startAgimoLog starts agimo-log beside the layout's agimo, on the same
// CPUs. The flags come after launchAgimo's "--access-log off": the last
// one counts.
func (e *env) startAgimoLog() (*agimoProc, error) {
	return startAgimo(e.s.agimoBin, e.dir, tAgimoLog, e.lay.ProxyCPUs, e.s.cluster.kubeconfig, e.agimoConf(), false,
		"--access-log", "stdout", "--access-log-format", "json", "--access-log-sample", "1")
}

// accessLogTargets are the access-log scenario's: no direct nor nginx,
// whose figures http-small has.
func (e *env) accessLogTargets() []target {
	return []target{
		{name: tAgimo, addr: e.agimo.addr, pids: func() []int { return []int{e.agimo.p.pid()} }},
		{name: tAgimoLog, addr: e.agimoLog.addr, pids: func() []int { return []int{e.agimoLog.p.pid()} }},
	}
}

// noteAccessLog records how many lines agimo-log wrote and dropped over
// the scenario: a line dropped is work not paid for, so the figure holds
// only if none were.
func (e *env) noteAccessLog() {
	lines, size, err := countLines(e.agimoLog.p.log)
	if err != nil {
		e.s.res.Notes = append(e.s.res.Notes, fmt.Sprintf("access-log, layout %s: %v", e.lay.Name, err))
		return
	}
	m, err := e.agimoLog.scrape()
	if err != nil {
		e.s.res.Notes = append(e.s.res.Notes, fmt.Sprintf("access-log, layout %s: %v", e.lay.Name, err))
		return
	}
	e.s.res.Notes = append(e.s.res.Notes, fmt.Sprintf(
		"access-log, layout %s: agimo-log wrote %s lines (%s MiB, warm-ups included) to its stdout file; dropped: %s with the buffer full, %s on write errors",
		e.lay.Name, report.Num(float64(lines)), report.Num(float64(size)/(1<<20)),
		report.Num(m[`agimo_access_log_dropped_total{reason="full"}`]),
		report.Num(m[`agimo_access_log_dropped_total{reason="write_error"}`])))
}

// countLines counts the newlines in the file at path and its size.
func countLines(path string) (lines, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("count lines: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		size += int64(n)
		if err == io.EOF {
			return lines, size, nil
		}
		if err != nil {
			return lines, size, fmt.Errorf("count lines: %w", err)
		}
	}
}

// accessLogTable compares agimo-log with agimo in each cell that has both.
func accessLogTable(cells []*cell) *report.Table {
	t := &report.Table{
		Header: []string{"scenario", "conns", "agimo CPU per req", "agimo-log CPU per req", "agimo-log / agimo CPU per req",
			"agimo throughput", "agimo-log throughput", "agimo-log / agimo throughput"},
		Right: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true},
	}
	for _, c := range cells {
		if c.byTarget[tAgimoLog] == nil {
			continue
		}
		u := unitOf(c.key.Scenario)
		µs := func(x float64) string { return report.Num(x) + " µs" }
		t.Add(c.key.Scenario, fmt.Sprint(c.key.Conns),
			report.Of(c.fig(tAgimo, u.cpuPer)).Format(µs),
			report.Of(c.fig(tAgimoLog, u.cpuPer)).Format(µs),
			c.ratio(tAgimoLog, tAgimo, u.cpuPer).Format(report.Ratio),
			withUnit(report.Of(c.fig(tAgimo, u.rate)), u.Name),
			withUnit(report.Of(c.fig(tAgimoLog, u.rate)), u.Name),
			c.ratio(tAgimoLog, tAgimo, u.rate).Format(report.Ratio))
	}
	return t
}
