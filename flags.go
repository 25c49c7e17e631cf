package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/leader"
	"github.com/agimo/agimo/tracing"
)

// flags are the command line (each with its AGIMO_* environment variable
// where it has one); names and defaults match the Rust original.
type flags struct {
	conf, kubeconfig, address, prometheusAddress string
	pprofAddress                                 string
	port, metricsPort, tlsPort                   int
	check                                        bool
	logLevel, logFormat                          string
	accessLog, accessLogFormat                   string
	accessLogSample                              float64
	accessLogQueryMax                            int
	drainDelay, shutdownTimeout                  time.Duration
	publishService, publishAddress               string
	otlpEndpoint                                 string
	otlpSample                                   float64
	statusLeaseNamespace                         string
	leaderElect                                  bool
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	var f flags
	fs := flag.NewFlagSet("agimo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.conf, "conf", os.Getenv("AGIMO_CONF"), "config file (TOML) [$AGIMO_CONF]")
	fs.IntVar(&f.port, "port", 8080, "proxy listener port")
	tlsPort := 8443
	if v, err := strconv.Atoi(os.Getenv("AGIMO_TLS_PORT")); err == nil {
		tlsPort = v
	}
	fs.IntVar(&f.tlsPort, "tls-port", tlsPort, "TLS listener port, opened when a certificate is configured [$AGIMO_TLS_PORT]")
	fs.IntVar(&f.metricsPort, "prometheus-exporter-port", 9090, "metrics and health listener port")
	fs.StringVar(&f.prometheusAddress, "prometheus-address", os.Getenv("AGIMO_PROMETHEUS_ADDRESS"),
		"accepted for compatibility and ignored: readiness comes from the Kubernetes API [$AGIMO_PROMETHEUS_ADDRESS]")
	fs.StringVar(&f.address, "address", "", "IP address both listeners bind to (default: all interfaces)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	fs.BoolVar(&f.check, "check", false, "validate the config file and exit")
	fs.StringVar(&f.pprofAddress, "pprof-address", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); off by default")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&f.accessLog, "access-log", "stdout", "access log destination: stdout, stderr or off")
	fs.StringVar(&f.accessLogFormat, "access-log-format", "json", "access log format: json or console")
	fs.Float64Var(&f.accessLogSample, "access-log-sample", 1,
		"share of successful (status < 400) requests logged, 0 to 1; errors are always logged")
	fs.IntVar(&f.accessLogQueryMax, "access-log-query-max", accesslog.DefaultQueryMax,
		"bytes of a path's query kept in the access log (0: none)")
	fs.DurationVar(&f.drainDelay, "drain-delay", 5*time.Second,
		"on SIGTERM, keep serving this long with /readyz failing, so load balancers stop sending")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 25*time.Second,
		"after the drain delay, how long in-flight requests may take to finish")
	fs.StringVar(&f.publishService, "publish-service", os.Getenv("AGIMO_PUBLISH_SERVICE"),
		"NAMESPACE/NAME of Agimo's Service, whose LoadBalancer ingress (else ClusterIP) served Ingresses' status shows [$AGIMO_PUBLISH_SERVICE]")
	fs.StringVar(&f.publishAddress, "publish-address", os.Getenv("AGIMO_PUBLISH_ADDRESS"),
		"IP addresses or host names, comma-separated, that served Ingresses' status shows instead [$AGIMO_PUBLISH_ADDRESS]")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", os.Getenv("AGIMO_OTLP_ENDPOINT"),
		"export a trace span per request over OTLP/HTTP to this URL (e.g. http://otel-collector:4318); off by default [$AGIMO_OTLP_ENDPOINT]")
	fs.Float64Var(&f.otlpSample, "otlp-sample", 1,
		"share of new traces recorded, 0 to 1; a client's sampled traceparent is always followed")
	fs.StringVar(&f.statusLeaseNamespace, "status-lease-namespace", "",
		"namespace of the Lease \""+leader.DefaultLease+"\" electing the replica that writes Ingress and Gateway API status (default: $POD_NAMESPACE, else the service account's, else default)")
	fs.BoolVar(&f.leaderElect, "leader-elect", true,
		"with ingress_class or gateway_class, elect one replica to write status (a Lease); false: this replica always writes it")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if f.conf == "" {
		return nil, errors.New("no config file: pass --conf FILE or set AGIMO_CONF")
	}
	switch {
	case f.accessLog != "stdout" && f.accessLog != "stderr" && f.accessLog != "off":
		return nil, fmt.Errorf("invalid --access-log %q: want stdout, stderr or off", f.accessLog)
	case f.accessLogFormat != "json" && f.accessLogFormat != "console":
		return nil, fmt.Errorf("invalid --access-log-format %q: want json or console", f.accessLogFormat)
	case !(f.accessLogSample > 0 && f.accessLogSample <= 1):
		return nil, fmt.Errorf("invalid --access-log-sample %v: want a share above 0 and at most 1", f.accessLogSample)
	case f.accessLogQueryMax < 0:
		return nil, fmt.Errorf("invalid --access-log-query-max %d: want 0 or more", f.accessLogQueryMax)
	case !(f.otlpSample >= 0 && f.otlpSample <= 1):
		return nil, fmt.Errorf("invalid --otlp-sample %v: want a share from 0 to 1", f.otlpSample)
	}
	if f.otlpEndpoint != "" {
		if _, err := tracing.CheckEndpoint(f.otlpEndpoint); err != nil {
			return nil, err
		}
	}
	if ns, name, ok := strings.Cut(f.publishService, "/"); f.publishService != "" && (!ok || ns == "" || name == "") {
		return nil, fmt.Errorf("invalid --publish-service %q: want NAMESPACE/NAME", f.publishService)
	}
	return &f, nil
}
