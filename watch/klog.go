package watch

import (
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/rs/zerolog"
	"k8s.io/klog/v2"
)

// RouteKlog sends client-go's klog output to log, so that a JSON log stays
// JSON. client-go's informational chatter goes to debug, its errors to
// warn: the watch error handler already reports what matters at error.
//
// klog's logger is process-global and read without synchronisation by
// client-go goroutines that may outlive a Watcher (a stream watcher
// logging its stream's end): it is set once, and later calls (a second
// run in tests) only swap the zerolog logger behind it, atomically.
func RouteKlog(log zerolog.Logger) {
	klogTarget.Store(&log)
	klogOnce.Do(func() { klog.SetLogger(logr.New(&klogSink{})) })
}

var (
	klogOnce   sync.Once
	klogTarget atomic.Pointer[zerolog.Logger]
)

type klogSink struct {
	name   string
	values []any
}

func (s *klogSink) log() *zerolog.Logger { return klogTarget.Load() }

func (s *klogSink) Init(logr.RuntimeInfo) {}

func (s *klogSink) Enabled(level int) bool { return s.log().GetLevel() <= zerolog.DebugLevel }

func (s *klogSink) Info(level int, msg string, kv ...any) {
	s.emit(s.log().Debug().Int("v", level), msg, kv)
}

func (s *klogSink) Error(err error, msg string, kv ...any) {
	s.emit(s.log().Warn().Err(err), msg, kv)
}

func (s *klogSink) emit(ev *zerolog.Event, msg string, kv []any) {
	if s.name != "" {
		ev = ev.Str("logger", s.name)
	}
	ev.Fields(append(append([]any{}, s.values...), kv...)).Str("source", "client-go").Msg(msg)
}

func (s *klogSink) WithValues(kv ...any) logr.LogSink {
	c := *s
	c.values = append(append([]any{}, s.values...), kv...)
	return &c
}

func (s *klogSink) WithName(name string) logr.LogSink {
	c := *s
	if c.name != "" {
		name = c.name + "/" + name
	}
	c.name = name
	return &c
}
