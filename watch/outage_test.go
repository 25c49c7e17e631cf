package watch

import (
	"context"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// connRefused is what client-go returns when nothing listens on the API
// server's address: a *url.Error around a dial error.
func connRefused() error {
	return &url.Error{Op: "Get", URL: "https://10.96.0.1:443/apis/discovery.k8s.io/v1/namespaces/apps/endpointslices",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
}

// The API server goes away mid-run (issue 10, item 12): the informer's
// watch ends and every new watch is refused. client-go's reflector
// retries a refused watch silently, backing off towards 30 s; Agimo must
// count and log each failure as it happens (the log rate-limited to one
// line per resource per 10 s, with the count), keep retrying about once a
// second, and, once the API server is back, catch up and say so.
func TestAPIServerUnreachableMidRun(t *testing.T) {
	r := newFaultRig(t, webService(), webSlice(true, "10.0.0.1"))
	r.ownWatch.Store(true)
	if err := <-r.start(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	s := r.w.Service(faultKey)
	st := waitFor(t, s, 5*time.Second, "ready at 10.0.0.1", hasAddrs("10.0.0.1:8080"))
	fw := <-r.watches
	const series = `agimo_watch_errors_total{resource="endpointslices"}`
	before := r.metric(series)

	r.setFail(connRefused())
	fw.Stop() // the connection to the API server is gone
	r.updateSlice(t, webSlice(true, "10.0.0.9"))
	// Six refused calls: 0.2+0.4+0.8+0.8+0.8 s of retries, plus jitter;
	// client-go's own backoff would take 0.8+1.6+3.2+6.4+12.8 s at least.
	// The sixth starting means the fifth has been reported.
	r.waitFailed(t, 6, 10*time.Second, "while the API server refuses connections")
	if got := r.metric(series); got < before+5 {
		t.Errorf("%s = %v (was %v); want ≥ %v: every refused watch counted", series, got, before, before+5)
	}
	if s.State() != st || !r.w.Synced() {
		t.Errorf("state replaced or Synced() false during the outage; want the last known state served")
	}
	var lines []string
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(l, `"level":"warn"`) && strings.Contains(l, `"resource":"endpointslices"`) && strings.Contains(l, "connection refused") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Errorf("%d warn lines for endpointslices after 6 failures within 10 s; want 1 (rate-limited):\n%s", len(lines), r.logs.String())
	}

	r.setFail(nil)
	waitFor(t, s, 10*time.Second, "ready at 10.0.0.9 once the API server is back", hasAddrs("10.0.0.9:8080"))
	if !strings.Contains(r.logs.String(), "Kubernetes API server answers again") {
		t.Errorf("no line saying the API server answers again:\n%s", r.logs.String())
	}
}

// Only a missing answer or a 503 is retried quickly; an answer the
// reflector must act on (a 403, a 410 for an expired resource version, a
// 429) goes back to it, and a cancelled call is nobody's failure.
func TestUnreachable(t *testing.T) {
	gr := schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection-refused", connRefused(), true},
		{"service-unavailable", apierrors.NewServiceUnavailable("etcd is down"), true},
		{"forbidden", apierrors.NewForbidden(gr, "", nil), false},
		{"expired", apierrors.NewResourceExpired("too old resource version"), false},
		{"too-many-requests", apierrors.NewTooManyRequests("slow down", 1), false},
		{"cancelled", &url.Error{Op: "Get", URL: "https://x", Err: context.Canceled}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unreachable(tc.err); got != tc.want {
				t.Errorf("unreachable(%v) = %v; want %v", tc.err, got, tc.want)
			}
		})
	}
}
