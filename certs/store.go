// Package certs is Agimo's certificate pool for TLS termination (issue
// 11): every certificate the config names — kubernetes.io/tls Secrets (a
// service's tls_secret, the top-level tls_secrets) and PEM file pairs
// (tls_cert_file/tls_key_file) — held as one immutable snapshot that the
// TLS listener's GetCertificate reads without a lock, and picked by the
// ClientHello's SNI. Secrets are watched and files polled, so a renewed
// certificate reaches new handshakes within seconds while open
// connections keep theirs; a broken source keeps its last good
// certificate. The handshake itself, and the classification of its
// failures, are the edge's (package edge).
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"k8s.io/client-go/kubernetes"

	"github.com/agimo/agimo/conf"
)

// DefaultPollInterval is how often certificate files are checked for
// changes: a mounted Secret's files change by a symlink swap the kubelet
// makes about a minute after the Secret, so seconds here add little.
const DefaultPollInterval = 2 * time.Second

// Options are a Store's dependencies.
type Options struct {
	Log zerolog.Logger
	// Metrics receives agimo_tls_certificate_errors_total{source} and
	// agimo_tls_certificate_expiry_timestamp_seconds{source}, and the
	// Secret informers' agimo_watch_errors_total{resource="secrets"}.
	// It may be nil.
	Metrics *metrics.Set
	// PollInterval is how often file pairs are checked for changes;
	// 0 means DefaultPollInterval.
	PollInterval time.Duration
}

// ErrNoCertificate is returned to a handshake while no configured
// certificate could be loaded yet.
var ErrNoCertificate = errors.New("certs: no certificate loaded")

// Store is the certificate pool. Its methods are safe for concurrent use.
type Store struct {
	log    zerolog.Logger
	set    *metrics.Set
	client kubernetes.Interface
	poll   time.Duration

	snap atomic.Pointer[snapshot]

	// mu guards the fields below, and serialises building snapshots:
	// Secret events and file polls arrive on different goroutines.
	mu      sync.Mutex
	order   []source                    // configured sources, in config order
	good    map[string]*tls.Certificate // source key → last good certificate
	secrets map[string]*secretWatch
	files   map[string]*fileWatch
	ctx     context.Context // of the running store, from Start to Stop
	cancel  context.CancelFunc
	stopped bool
	wg      sync.WaitGroup // every watcher goroutine

	// changed, if set (by tests, before Start), is called after each
	// attempt to load a source, with its outcome: the signal that an
	// update had its effect.
	changed func(id string, err error)
}

// New returns a Store for the certificates cfg names, with the file pairs
// already loaded; Secrets are read from Start on. client may be nil when
// cfg names no Secret. A file pair that fails to load is logged and
// counted, not fatal (--check is where a bad pair stops Agimo): the other
// certificates still serve.
func New(cfg *conf.Config, client kubernetes.Interface, opts Options) (*Store, error) {
	srcs := sourcesOf(cfg)
	if client == nil && hasSecret(srcs) {
		return nil, errors.New("certs: the config names TLS Secrets but no Kubernetes client was given")
	}
	s := &Store{
		log: opts.Log, set: opts.Metrics, client: client, poll: opts.PollInterval,
		good: make(map[string]*tls.Certificate), secrets: make(map[string]*secretWatch), files: make(map[string]*fileWatch),
	}
	if s.poll <= 0 {
		s.poll = DefaultPollInterval
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setSourcesLocked(srcs)
	return s, nil
}

// Enabled reports whether at least one certificate is configured (loaded
// or not): the TLS listener is opened only then.
func (s *Store) Enabled() bool { return s.snap.Load().configured > 0 }

// TLSConfig returns a new server config drawing certificates from the
// pool: TLS 1.2 and 1.3 only, Go's default cipher suites (which follow
// RFC 9325's recommendations and drop the weak ones), ALPN h2 then
// http/1.1 (RFC 7301). Each handshake reads the snapshot current when it
// starts; a rotation never touches an established connection.
func (s *Store) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: s.getCertificate,
	}
}

func (s *Store) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.snap.Load().pick(hello.ServerName); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

// Start starts watching the Secrets and files and returns once every
// Secret informer has delivered its first list (so the pool holds every
// Secret that exists), or with ctx's error if ctx ends first. The
// watchers run until Stop, which must be called in either case.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped || s.ctx != nil {
		s.mu.Unlock()
		return errors.New("certs: Start called twice or after Stop")
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	pend := s.startWatchesLocked()
	s.mu.Unlock()
	return s.waitSynced(ctx, pend)
}

// Stop stops every watcher and waits for its goroutines. The pool keeps
// serving its last snapshot. Stop may be called more than once.
func (s *Store) Stop() {
	s.mu.Lock()
	s.stopped = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Reload switches to the certificate sources of a reloaded config.
// Sources that stay keep their certificate and watcher; new file pairs
// are loaded before Reload returns; new Secrets are served once their
// informer has listed them (well under a second on a healthy API
// server; Reload does not wait, so a slow API server cannot stall the
// reload loop); sources dropped leave the pool at once, with their
// metrics. It fails only if cfg names Secrets and the Store has no
// client, or after Stop.
func (s *Store) Reload(cfg *conf.Config) error {
	srcs := sourcesOf(cfg)
	if s.client == nil && hasSecret(srcs) {
		return errors.New("certs: the config names TLS Secrets but no Kubernetes client was given")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("certs: Reload after Stop")
	}
	s.setSourcesLocked(srcs)
	if s.ctx != nil {
		s.startWatchesLocked()
	}
	return nil
}

// setSourcesLocked makes srcs the configured sources: watchers and
// metrics of dropped sources go, new file pairs are loaded. s.mu is held.
func (s *Store) setSourcesLocked(srcs []source) {
	want := make(map[string]bool, len(srcs))
	for _, src := range srcs {
		want[src.key()] = true
	}
	for _, src := range s.order {
		k := src.key()
		if want[k] {
			continue
		}
		delete(s.good, k)
		if w := s.secrets[k]; w != nil {
			w.stop()
			delete(s.secrets, k)
		}
		if w := s.files[k]; w != nil {
			w.stop()
			delete(s.files, k)
		}
		s.unregisterMetrics(src)
	}
	old := make(map[string]bool, len(s.order))
	for _, src := range s.order {
		old[src.key()] = true
	}
	s.order = srcs
	for _, src := range srcs {
		if old[src.key()] {
			continue
		}
		s.errorsCounter(src) // exported at 0 from the start, for rate() alerts
		if src.isFile() {
			w := &fileWatch{src: src, since: src.stamp()} // before reading: a later write is a change
			c, err := src.loadFile()
			s.recordLocked(src, c, err, "loaded")
			s.files[src.key()] = w
		}
	}
	s.publishLocked()
}

// startWatchesLocked starts the watchers not yet running and returns the
// Secret informers to wait for. s.mu is held and s.ctx set.
func (s *Store) startWatchesLocked() []*secretWatch {
	var pend []*secretWatch
	for _, src := range s.order {
		k := src.key()
		if src.isFile() {
			if w := s.files[k]; w != nil && w.cancel == nil {
				s.runFileWatch(w)
			}
			continue
		}
		if s.secrets[k] == nil {
			w := s.newSecretWatch(src)
			s.secrets[k] = w
			pend = append(pend, w)
		}
	}
	return pend
}

// update records the outcome of loading src's certificate, unless owner
// (the watcher that loaded it) no longer watches src: a source dropped
// by a reload, whose watcher was still finishing, changes nothing.
func (s *Store) update(src source, owner any, c *tls.Certificate, err error, how string) {
	s.mu.Lock()
	k := src.key()
	mine := (s.secrets[k] != nil && any(s.secrets[k]) == owner) || (s.files[k] != nil && any(s.files[k]) == owner)
	if mine {
		s.recordLocked(src, c, err, how)
	}
	s.mu.Unlock()
	if mine && s.changed != nil {
		s.changed(src.id(), err)
	}
}

// recordLocked swaps c in as src's certificate, or logs and counts err,
// in which case src's previous certificate, if any, keeps serving. s.mu
// is held, so a reload cannot drop src's metrics in between.
func (s *Store) recordLocked(src source, c *tls.Certificate, err error, how string) {
	if err != nil {
		s.errorsCounter(src).Inc()
		msg := "TLS certificate unusable; no certificate from this source yet"
		if s.good[src.key()] != nil {
			msg = "TLS certificate unusable; the previous certificate from this source keeps serving"
		}
		s.log.Error().Err(err).Str("source", src.id()).Msg(msg)
		return
	}
	s.good[src.key()] = c
	s.publishLocked()
	if s.set != nil {
		s.set.GetOrCreateGauge(expiryName(src), nil).Set(float64(c.Leaf.NotAfter.Unix()))
	}
	s.log.Info().Str("source", src.id()).Strs("names", c.Leaf.DNSNames).Time("not_after", c.Leaf.NotAfter).
		Msg("TLS certificate " + how)
}

// publishLocked builds and swaps in the snapshot of the good
// certificates, in configured order. s.mu is held.
func (s *Store) publishLocked() {
	certs := make([]*tls.Certificate, 0, len(s.order))
	for _, src := range s.order {
		if c := s.good[src.key()]; c != nil {
			certs = append(certs, c)
		}
	}
	s.snap.Store(buildSnapshot(certs, len(s.order)))
}

func (s *Store) errorsCounter(src source) *metrics.Counter {
	if s.set == nil {
		return new(metrics.Counter) // counts into nothing
	}
	return s.set.GetOrCreateCounter(fmt.Sprintf(`agimo_tls_certificate_errors_total{source=%q}`, src.id()))
}

func expiryName(src source) string {
	return fmt.Sprintf(`agimo_tls_certificate_expiry_timestamp_seconds{source=%q}`, src.id())
}

func (s *Store) unregisterMetrics(src source) {
	if s.set == nil {
		return
	}
	s.set.UnregisterMetric(expiryName(src))
	s.set.UnregisterMetric(fmt.Sprintf(`agimo_tls_certificate_errors_total{source=%q}`, src.id()))
}
