package watch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/watchlist"
)

// errLogEvery is how often at most one resource's failures are logged:
// a down API server fails every call, about once a second per informer.
const errLogEvery = 10 * time.Second

// unreachableRetry paces the retries of a list or watch while the API
// server is unreachable: 0.2 s, 0.4 s, then 0.8 s for good, each plus
// up to half again of jitter, so a returning API server is seen within
// ~1.2 s. client-go's reflector would instead back off to 30 s plus up
// to 30 s of jitter (and, for a failed watch call, say nothing: issue
// 10, item 12). This does not hammer an API server that stays down: a
// refused connection costs it nothing, the jitter spreads the informers
// out, and all of them share the client's rate limiter (client-go's
// default 5 requests/s). Only errors that carry no answer from the API
// server, or a 503 (starting, or its etcd down), are retried here;
// anything it answered (403, 410, 429, ...) goes back to the reflector,
// which knows what each means and backs off as usual.
var unreachableRetry = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.5, Cap: 800 * time.Millisecond, Steps: math.MaxInt32}

// unreachable reports whether err means the API server could not be
// reached or is not serving yet.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return apierrors.IsServiceUnavailable(err)
	}
	// The HTTP client's errors (*url.Error) are net.Errors: no answer.
	_, ok := errors.AsType[net.Error](err)
	return ok
}

// errReporter counts and logs, as they happen, the failed lists and
// watches of one resource in one namespace. The reflector reports only
// some of them (a failed watch call it retries silently), and only after
// its own backoff.
type errReporter struct {
	w                   *Watcher
	resource, group, ns string
	counter             *metrics.Counter // nil without a metrics set

	mu       sync.Mutex
	lastLog  time.Time // of the last failure line
	unlogged int       // failures since the last line
	failures int       // since the last success
	logged   bool      // a line was logged for the current failures
	last     error     // the last error reported
}

func (w *Watcher) newErrReporter(resource, group, ns string) *errReporter {
	e := &errReporter{w: w, resource: resource, group: group, ns: ns}
	if w.errSet != nil {
		e.counter = w.errSet.GetOrCreateCounter(fmt.Sprintf(`agimo_watch_errors_total{resource=%q}`, resource))
	}
	return e
}

// failed counts err and logs it, at most once per errLogEvery with the
// number of failures since the last line. A Forbidden is spelled out as
// the missing RBAC rule (issue 2).
func (e *errReporter) failed(err error) {
	if e.counter != nil {
		e.counter.Inc()
	}
	e.mu.Lock()
	e.failures++
	e.unlogged++
	e.last = err
	now := time.Now()
	if !e.lastLog.IsZero() && now.Sub(e.lastLog) < errLogEvery {
		e.mu.Unlock()
		return
	}
	n := e.unlogged
	e.unlogged, e.lastLog, e.logged = 0, now, true
	e.mu.Unlock()
	if apierrors.IsForbidden(err) {
		e.w.log.Error().Err(err).Str("namespace", e.ns).Int("failures", n).
			Str("missing_permission", fmt.Sprintf("list and watch %s (apiGroup %q) in namespace %s", e.resource, e.group, e.ns)).
			Msg("forbidden by RBAC: grant the missing permission to Agimo's service account")
		return
	}
	e.w.log.Warn().Err(err).Str("namespace", e.ns).Str("resource", e.resource).Int("failures", n).
		Msg("list or watch failed; serving from last known state and retrying")
}

// succeeded notes an answered call, and says so once after failures that
// were logged.
func (e *errReporter) succeeded() {
	e.mu.Lock()
	n, logged := e.failures, e.logged
	e.failures, e.unlogged, e.logged = 0, 0, false
	e.mu.Unlock()
	if logged {
		e.w.log.Info().Str("namespace", e.ns).Str("resource", e.resource).Int("failures", n).
			Msg("Kubernetes API server answers again")
	}
}

// lastErr returns the error of the last failed call, or nil if the last
// call succeeded or none was made.
func (e *errReporter) lastErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failures == 0 {
		return nil
	}
	return e.last
}

// handler is the informer's WatchErrorHandler: every error it is given
// came from a list or watch call this reporter already counted, except
// the rare one of the reflector's own (decoding, store).
func (e *errReporter) handler(_ *cache.Reflector, err error) {
	e.mu.Lock()
	last := e.last
	e.mu.Unlock()
	if errors.Is(err, context.Canceled) || (last != nil && errors.Is(err, last)) {
		return
	}
	e.failed(err)
}

// reportingLW is a ListerWatcher that reports every failed call, and
// retries those that found the API server unreachable itself, quickly
// (unreachableRetry), until they succeed or ctx ends.
type reportingLW struct {
	list        func(context.Context, metav1.ListOptions) (runtime.Object, error)
	watch       func(context.Context, metav1.ListOptions) (apiwatch.Interface, error)
	rep         *errReporter
	noWatchList bool
}

var _ cache.ListerWatcherWithContext = (*reportingLW)(nil)

func (l *reportingLW) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	return retry(ctx, l.rep, func() (runtime.Object, error) { return l.list(ctx, o) })
}

func (l *reportingLW) WatchWithContext(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
	return retry(ctx, l.rep, func() (apiwatch.Interface, error) { return l.watch(ctx, o) })
}

func (l *reportingLW) List(o metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), o)
}

func (l *reportingLW) Watch(o metav1.ListOptions) (apiwatch.Interface, error) {
	return l.WatchWithContext(context.Background(), o)
}

// IsWatchListSemanticsUnSupported passes on what the client supports, as
// client-go's own informers do (cache.ToListWatcherWithWatchListSemantics).
func (l *reportingLW) IsWatchListSemanticsUnSupported() bool { return l.noWatchList }

func retry[T any](ctx context.Context, rep *errReporter, call func() (T, error)) (T, error) {
	b := unreachableRetry
	for {
		v, err := call()
		switch {
		case err == nil:
			rep.succeeded()
			return v, nil
		case ctx.Err() != nil:
			// Stopping: not a failure, and not one the reflector should
			// back off for (its watch-list path would, uninterruptibly).
			return v, ctx.Err()
		}
		rep.failed(err)
		if !unreachable(err) {
			return v, err
		}
		t := time.NewTimer(b.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
	}
}

// newReportingLW wraps one resource's list and watch calls.
func newReportingLW(client any, rep *errReporter,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (apiwatch.Interface, error),
) *reportingLW {
	return &reportingLW{list: list, watch: watchFn, rep: rep, noWatchList: watchlist.DoesClientNotSupportWatchListSemantics(client)}
}
