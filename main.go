// Command agimo is a scale-to-zero front proxy for Kubernetes: it routes
// HTTP and WebSocket requests by Host to Deployments and StatefulSets,
// holds requests while a workload has no ready endpoint, and exports the
// metrics that let KEDA or an HPA scale it between zero and N.
//
// main only wires: flags → config → logger → readiness watch and
// certificates (synced) → listeners and front ends (servers.go) → signal
// → ordered shutdown.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/gateway"
	"github.com/agimo/agimo/ingress"
	"github.com/agimo/agimo/leader"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/stats"
	"github.com/agimo/agimo/status"
	"github.com/agimo/agimo/tracing"
	"github.com/agimo/agimo/watch"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "agimo:", err)
		}
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	loaded := conf.Stat(f.conf) // before Load: a later edit is a change
	cfg, err := conf.Load(f.conf)
	if f.check {
		if err == nil {
			err = cfg.CheckCertFiles()
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok, %d services\n", f.conf, len(cfg.Services))
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	watch.RouteKlog(log)
	if f.prometheusAddress != "" {
		log.Info().Str("prometheus_address", f.prometheusAddress).
			Msg("--prometheus-address is ignored: readiness now comes from the Kubernetes API")
	}
	kcfg, err := kubeConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}

	// Routes from the cluster (issue 12): the Ingresses of ingress_class
	// become extra entries, merged with the file's before every build.
	fileCfg := cfg
	var ing *ingress.Controller
	var gw *gateway.Controller
	clusterChanged := make(chan struct{}, 1)
	changed := func() {
		select {
		case clusterChanged <- struct{}{}:
		default:
		}
	}
	// Status is written by one replica (package leader); all serve.
	var elect *leader.Elector
	var leading func() bool
	if (cfg.IngressClass != "" || cfg.GatewayClass != "") && f.leaderElect {
		elect, err = leader.New(client, leader.Namespace(f.statusLeaseNamespace), leader.DefaultLease, log, func() {
			if ing != nil {
				ing.Resync()
			}
			if gw != nil {
				gw.Resync()
			}
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		leading = elect.Leading
	}
	if cfg.IngressClass != "" {
		ing = ingress.New(ingress.Options{Client: client, Log: log,
			PublishService: f.publishService, PublishAddress: f.publishAddress,
			Leading: leading, Changed: changed})
		ictx, icancel := context.WithCancel(ctx)
		defer func() { icancel(); ing.Close() }()
		if err := ing.Start(ictx); err != nil {
			return err
		}
		if cfg, err = ing.Merge(fileCfg); err != nil {
			return err
		}
	}
	if cfg.GatewayClass != "" {
		if gw, err = newGateway(kcfg, client, f, log, leading, changed); err != nil {
			return err
		}
		gctx, gcancel := context.WithCancel(ctx)
		defer func() { gcancel(); gw.Close() }()
		if err := gw.Start(gctx); err != nil {
			return err
		}
		if cfg, err = gw.Merge(cfg); err != nil {
			return err
		}
	}

	set := metrics.NewSet()
	alog, err := newAccessLog(f, stdout, stderr, log, set)
	if err != nil {
		return err
	}
	defer func() {
		// After the front ends: their last lines are written.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := alog.Close(cctx); err != nil {
			log.Warn().Err(err).Msg("access log not flushed")
		}
	}()
	tracer, err := tracing.New(tracing.Options{Endpoint: f.otlpEndpoint, Sample: f.otlpSample, Log: log, Metrics: set})
	if err != nil {
		return err
	}
	defer func() {
		// After the front ends: their last spans have ended. Bounded, as
		// a collector that does not answer must not hold the exit up.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracer.Shutdown(cctx); err != nil {
			log.Warn().Err(err).Msg("trace spans not flushed")
		}
	}()
	var synced, draining atomic.Bool
	// The status page (issue 14) shows the core once it is built.
	var live atomic.Pointer[core.Core]
	reloadRec := &status.Reloads{}
	adminMux := http.NewServeMux()
	adminMux.Handle("GET /status", status.Handler(status.Options{Core: live.Load, Reloads: reloadRec}))
	adminMux.Handle("/", stats.AdminHandler(set, func() bool { return synced.Load() && !draining.Load() }))
	admin := &http.Server{Handler: adminMux, ReadHeaderTimeout: 10 * time.Second}
	adminLn, err := net.Listen("tcp", net.JoinHostPort(f.address, strconv.Itoa(f.metricsPort)))
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(f.address, strconv.Itoa(f.port)))
	if err != nil {
		adminLn.Close()
		return fmt.Errorf("proxy listener: %w", err)
	}
	var tlsLn net.Listener
	if wantsTLSPort(cfg) {
		if tlsLn, err = net.Listen("tcp", net.JoinHostPort(f.address, strconv.Itoa(f.tlsPort))); err != nil {
			adminLn.Close()
			ln.Close()
			return fmt.Errorf("TLS listener: %w", err)
		}
	}
	ev := log.Info().Str("proxy", ln.Addr().String()).Str("metrics", adminLn.Addr().String())
	if tlsLn != nil {
		ev = ev.Str("tls", tlsLn.Addr().String())
	}
	ev.Int("services", len(cfg.Services)).Msg("agimo starting")

	g, gctx := errgroup.WithContext(ctx)
	var pp *http.Server
	if f.pprofAddress != "" {
		// For profiling under load (issue 5); never on a public address.
		pp = &http.Server{Addr: f.pprofAddress, Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := pp.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("pprof listener: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		if err := admin.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics listener: %w", err)
		}
		return nil
	})

	// abort unwinds a failed start: listeners closed, goroutines awaited.
	abort := func(err error) error {
		ln.Close()
		if tlsLn != nil {
			tlsLn.Close()
		}
		admin.Close()
		if pp != nil {
			pp.Close()
		}
		g.Wait()
		return err
	}
	w := watch.New(client, route.Keys(cfg), log, set)
	defer w.Close()
	srv, err := newServers(cfg, w, client, log, set, alog, tracer, ln, tlsLn)
	if err != nil {
		return abort(err)
	}
	live.Store(srv.core)
	// Requests are accepted only once readiness and certificates are
	// known: before the first sync every service would look cold.
	if err := errors.Join(w.Start(gctx), srv.start(gctx)); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.shutdown(sctx)
		if ctx.Err() != nil {
			return abort(nil) // signalled while starting
		}
		return abort(err)
	}
	synced.Store(true)
	srv.serve(g)

	// Hot reload (issue 7): on SIGHUP and whenever the file changes. An
	// invalid config is logged and counted while the running one serves on.
	reloads := make(chan struct{}, 1)
	trigger := func() {
		select {
		case reloads <- struct{}{}:
		default:
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.Go(func() error {
		conf.WatchFile(gctx, f.conf, loaded, 2*time.Second, trigger)
		return nil
	})
	if ing != nil {
		g.Go(func() error { ing.Run(gctx); return nil })
	}
	if gw != nil {
		g.Go(func() error { gw.Run(gctx); return nil })
	}
	if elect != nil {
		g.Go(func() error { elect.Run(gctx); return nil })
	}
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				trigger()
			case <-reloads:
				if c := reload(gctx, f.conf, nil, ing, gw, srv, w, log, set, reloadRec); c != nil {
					fileCfg = c
				}
			case <-clusterChanged:
				// The last valid file with the cluster's routes now.
				reload(gctx, f.conf, fileCfg, ing, gw, srv, w, log, set, reloadRec)
			}
		}
	})

	<-gctx.Done()
	if ctx.Err() != nil {
		log.Info().Dur("drain_delay", f.drainDelay).Msg("signal received: draining")
		draining.Store(true)
		time.Sleep(f.drainDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	if err := srv.shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("shutdown incomplete")
	}
	if err := admin.Shutdown(sctx); err != nil {
		admin.Close()
	}
	if pp != nil {
		pp.Close()
	}
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info().Msg("agimo stopped")
	return nil
}
