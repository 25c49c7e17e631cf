package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/gateway"
	"github.com/agimo/agimo/ingress"
	"github.com/agimo/agimo/status"
	"github.com/agimo/agimo/watch"
)

// The pieces run assembles: loggers, API credentials, the reload step.

func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// reloadTimeout bounds one reload (issue 10, item 13). Its only slow step
// is the first sync of the informers of namespaces or Services it adds:
// well under a second on a healthy API server. 30 s also covers a busy
// one, and the reflector's first backoffs after a 403 (0.8 s doubling:
// RBAC granted a few seconds after the config still works). A reload
// that cannot sync (no RBAC for a new namespace, API server unreachable)
// is rejected past it like an invalid config, so the reload loop is
// free again for the next one, the operator's revert say.
var reloadTimeout = 30 * time.Second

// reload loads the config file again (or takes file, the last one loaded,
// when the cluster's routes changed), merges the routes from the cluster
// (ing and gw, nil if off), and switches to the result if it is valid and
// its new informers sync within reloadTimeout. Its outcome goes to rec,
// for the status page. It returns the file's config when it was loaded and
// applied, else nil.
func reload(ctx context.Context, path string, file *conf.Config, ing *ingress.Controller, gw *gateway.Controller, srv *servers, w *watch.Watcher,
	log zerolog.Logger, set *metrics.Set, rec *status.Reloads) *conf.Config {
	var err error
	if file == nil {
		file, err = conf.Load(path)
	}
	cfg := file
	if err == nil && ing != nil {
		cfg, err = ing.Merge(file)
	} else if err == nil && file.IngressClass != "" {
		log.Warn().Str("ingress_class", file.IngressClass).Msg("ingress_class set by a reload: takes effect at the next restart")
	}
	if err == nil && gw != nil {
		cfg, err = gw.Merge(cfg)
	} else if err == nil && file.GatewayClass != "" {
		log.Warn().Str("gateway_class", file.GatewayClass).Msg("gateway_class set by a reload: takes effect at the next restart")
	}
	if err == nil {
		rctx, cancel := context.WithTimeoutCause(ctx, reloadTimeout,
			fmt.Errorf("not synced within %v", reloadTimeout))
		err = srv.reload(rctx, cfg, w)
		cancel()
	}
	rec.Record(time.Now(), err)
	if err != nil {
		set.GetOrCreateCounter(`agimo_config_reloads_total{result="error"}`).Inc()
		set.GetOrCreateGauge("agimo_config_last_reload_successful", nil).Set(0)
		log.Error().Err(err).Str("conf", path).Msg("config reload rejected; still serving the previous config")
		return nil
	}
	set.GetOrCreateCounter(`agimo_config_reloads_total{result="ok"}`).Inc()
	set.GetOrCreateGauge("agimo_config_last_reload_successful", nil).Set(1)
	return file
}

// newAccessLog starts the access log the flags ask for (nil: off).
func newAccessLog(f *flags, stdout, stderr io.Writer, log zerolog.Logger, set *metrics.Set) (*accesslog.Logger, error) {
	// parseFlags has checked the values.
	w := stdout
	switch f.accessLog {
	case "stderr":
		w = stderr
	case "off":
		return nil, nil
	}
	qm := f.accessLogQueryMax
	if qm == 0 {
		qm = -1 // accesslog's "no query"
	}
	return accesslog.New(w, accesslog.Options{Format: f.accessLogFormat, Sample: f.accessLogSample,
		QueryMax: qm, Metrics: set, Log: log})
}

func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	default:
		return zerolog.Logger{}, fmt.Errorf("invalid --log-format %q: want json or console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// kubeConfig finds API server credentials as kubectl does: an explicit
// file, else in-cluster, else $KUBECONFIG, else ~/.kube/config.
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		if c, err := rest.InClusterConfig(); err == nil {
			return c, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	return c, nil
}

// newGateway makes the Gateway API controller (gateway_class): its
// listeners must use Agimo's ports.
func newGateway(kcfg *rest.Config, client kubernetes.Interface, f *flags, log zerolog.Logger, leading func() bool, changed func()) (*gateway.Controller, error) {
	gwc, err := gwclient.NewForConfig(kcfg)
	if err != nil {
		return nil, fmt.Errorf("gateway API client: %w", err)
	}
	return gateway.New(gateway.Options{Client: gwc, Kube: client, Log: log,
		Ports:          gateway.Ports{HTTP: f.port, TLS: f.tlsPort},
		PublishService: f.publishService, PublishAddress: f.publishAddress,
		Leading: leading, Changed: changed}), nil
}
