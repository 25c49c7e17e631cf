package watch

import (
	"context"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// ReportingListWatch is the ListerWatcher of an informer built outside
// this package (package certs' Secret informers) that fails and retries
// as the Watcher's own do: every failed list or watch is counted in
// agimo_watch_errors_total{resource} and logged (a 403 naming the missing
// permission), and an unreachable API server is retried quickly instead
// of after client-go's 30-60 s backoff. Give ErrorHandler to the
// informer's SetWatchErrorHandler.
type ReportingListWatch struct {
	*reportingLW
}

// NewReportingListWatch wraps one resource's list and watch calls in
// namespace ns. client is the clientset the calls use (for its watch-list
// support); set may be nil.
func NewReportingListWatch(client any, log zerolog.Logger, set *metrics.Set, resource, group, ns string,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (apiwatch.Interface, error),
) *ReportingListWatch {
	// The reporter reads only the Watcher's logger and metrics set.
	rep := (&Watcher{log: log, errSet: set}).newErrReporter(resource, group, ns)
	return &ReportingListWatch{newReportingLW(client, rep, list, watchFn)}
}

// ErrorHandler is the informer's WatchErrorHandler.
func (l *ReportingListWatch) ErrorHandler(r *cache.Reflector, err error) { l.rep.handler(r, err) }

// LastError returns the error of the last failed call, or nil if the last
// call succeeded or none was made.
func (l *ReportingListWatch) LastError() error { return l.rep.lastErr() }
