// Package conf reads Agimo's TOML configuration: the same file the original
// Rust Agimo read (top-level timeout and [[services]]), plus optional keys
// that only add behaviour. Parse decodes, Validate checks and normalises;
// every error names the file, the line and the key.
package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults for keys a config may leave out.
const (
	DefaultTimeout             = 30 * time.Second
	DefaultUpstreamTimeout     = 60 * time.Second
	DefaultClientHeaderTimeout = 10 * time.Second
	DefaultClientBodyTimeout   = 60 * time.Second
	DefaultSendTimeout         = 60 * time.Second
	DefaultMaxHeaderSize       = 16 << 10
	DefaultMaxConnections      = 100_000
	DefaultMaxParked           = 100_000
)

// Config is a whole configuration file.
type Config struct {
	// Timeout bounds how long a request waits for its service to become
	// ready (the original's key).
	Timeout Duration `toml:"timeout"`
	// UpstreamTimeout is how long an upstream may stay silent, while we
	// wait for its response or its next body bytes, before the request
	// fails with 504 (nginx's proxy_read_timeout).
	UpstreamTimeout Duration `toml:"upstream_timeout"`
	// TrustForwardedHeaders keeps clients' X-Forwarded-* headers (and
	// appends to X-Forwarded-For) instead of replacing them. Turn it on only
	// when every client is a trusted proxy, such as a cloud load balancer.
	TrustForwardedHeaders bool `toml:"trust_forwarded_headers"`
	// ClientHeaderTimeout bounds the time a client may take to send a
	// request head (slowloris protection; nginx's client_header_timeout).
	ClientHeaderTimeout Duration `toml:"client_header_timeout"`
	// ClientBodyTimeout bounds the wait between two reads of a request
	// body, not the whole body: a client silent that long gets 408
	// (nginx's client_body_timeout). A service may override it.
	ClientBodyTimeout Duration `toml:"client_body_timeout"`
	// SendTimeout bounds the wait between two successful writes of a
	// response to the client, not the whole response: a client that reads
	// nothing for that long is disconnected (nginx's send_timeout). A
	// service may override it.
	SendTimeout Duration `toml:"send_timeout"`
	// MaxHeaderSize bounds a request's head (request line and headers);
	// larger heads get 431.
	MaxHeaderSize Size `toml:"max_header_size"`
	// MaxRequestBody bounds request bodies (413); 0, the default, means no
	// limit, as bodies are streamed, never held in memory.
	MaxRequestBody Size `toml:"max_request_body"`
	// MaxConnections caps open client connections; past it new ones get
	// 503 at once.
	MaxConnections int `toml:"max_connections"`
	// MaxParked caps the requests parked on one service; past it new ones
	// get 503 with Retry-After at once. A service may override it.
	MaxParked int `toml:"max_parked"`
	// RequestID says what becomes of a client's well-formed X-Request-Id:
	// RequestIDTrust (default) keeps it, RequestIDReplace always
	// generates a new one (issue 14). A malformed one is always replaced.
	RequestID string `toml:"request_id"`
	// TLSSecrets are shared or wildcard certificates, "NAMESPACE/NAME" of
	// kubernetes.io/tls Secrets, served to any host they cover (issue 11).
	TLSSecrets []string `toml:"tls_secrets"`
	// IngressClass, if set, makes Agimo serve the Ingresses of the
	// IngressClass of that name (controller agimo.dev/ingress-controller)
	// besides Services (issue 12; package ingress). Then Services may be
	// empty.
	IngressClass string `toml:"ingress_class"`
	// GatewayClass, if set, makes Agimo serve the Gateways of the
	// GatewayClass of that name (controllerName agimo.dev/gateway-controller)
	// and the HTTPRoutes and GRPCRoutes attached to them (issue 12; package
	// gateway). Then Services may be empty.
	GatewayClass string `toml:"gateway_class"`
	// Services are the routes: one host, or one host's paths, each.
	Services []Service `toml:"services"`

	// File is the path the config was loaded from, for error messages.
	File string `toml:"-"`
	// lines maps a key path without indexes ("timeout", "services.host")
	// to where it occurs.
	lines map[string][]keyPos
}

// Service routes one host, or some paths of it, to one Kubernetes Service.
type Service struct {
	Host        string `toml:"host"`
	Type        string `toml:"type"`
	Namespace   string `toml:"namespace"`
	Name        string `toml:"name"`
	ServiceName string `toml:"service_name"`
	ServicePort int    `toml:"service_port"`

	// Paths are the path prefixes of Host this entry serves, matched on
	// segment boundaries (issue 12); default ["/"], every path. Validate
	// removes a trailing "/" ("/api/" is "/api").
	Paths []string `toml:"paths"`
	// ExactPaths are paths this entry serves only as they are: "/a" but
	// not "/a/" or "/a/x". Not a TOML key: an Ingress's pathType Exact
	// (package ingress). An entry with exact paths has no default Paths.
	ExactPaths []string `toml:"-"`

	// Timeout overrides Config.Timeout for this service.
	Timeout Duration `toml:"timeout"`
	// UpstreamTimeout overrides Config.UpstreamTimeout for this service.
	UpstreamTimeout Duration `toml:"upstream_timeout"`
	// ClientBodyTimeout overrides Config.ClientBodyTimeout for this service.
	ClientBodyTimeout Duration `toml:"client_body_timeout"`
	// SendTimeout overrides Config.SendTimeout for this service.
	SendTimeout Duration `toml:"send_timeout"`
	// Address, "host:port", overrides where requests are sent; readiness
	// still comes from the cluster (issue 2: for running outside a cluster).
	Address string `toml:"address"`
	// Dial is "endpoints" (default: straight to ready pod IPs) or
	// "service" (service_name.namespace.svc:service_port, for meshes).
	Dial string `toml:"dial"`
	// MaxParked overrides Config.MaxParked for this service.
	MaxParked int `toml:"max_parked"`
	// TunnelIdleTimeout closes a WebSocket tunnel through which no byte
	// moved for this long (issue 3); unset, tunnels never idle out.
	TunnelIdleTimeout Duration `toml:"tunnel_idle_timeout"`

	// Wake scales the workload up through its scale subresource when a
	// request parks while it has 0 replicas, instead of waiting for
	// Prometheus and KEDA to notice (issue 7).
	Wake bool `toml:"wake"`
	// MinReplicas is what Wake scales a workload at zero to. Default 1.
	MinReplicas int `toml:"min_replicas"`
	// IdleAfter, if set, scales the workload to zero after this long with
	// no active request through any Agimo replica.
	IdleAfter Duration `toml:"idle_after"`
	// WaitingPage answers a browser's GET for a cold service at once with
	// a small self-refreshing page, while other clients are held.
	WaitingPage bool `toml:"waiting_page"`
	// WaitingPageTemplate overrides the page: Go html/template text with
	// {{.Host}}, {{.Service}} and {{.RefreshSeconds}}.
	WaitingPageTemplate string `toml:"waiting_page_template"`
	// ProbePaths and ProbeUserAgents identify health checkers: their
	// requests are answered without waking the service or counting as
	// activity. A user agent matches if it contains the string.
	ProbePaths      []string `toml:"probe_paths"`
	ProbeUserAgents []string `toml:"probe_user_agents"`

	// TLSSecret names a kubernetes.io/tls Secret in the service's
	// namespace whose certificate joins the TLS pool (issue 11).
	TLSSecret string `toml:"tls_secret"`
	// TLSCertFile and TLSKeyFile are a PEM certificate chain and its key,
	// both or neither; they join the TLS pool too.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// HTTPSRedirect answers plain-HTTP requests with 308 to the https URL
	// (probes excepted).
	HTTPSRedirect bool `toml:"https_redirect"`
	// Protocol is how requests reach the upstream: ProtocolAuto (default:
	// the EndpointSlice port's appProtocol decides), ProtocolHTTP1 or
	// ProtocolH2C.
	Protocol string `toml:"protocol"`
	// TLSPassthrough routes TLS connections by SNI without terminating
	// them, splicing the raw bytes to the upstream.
	TLSPassthrough bool `toml:"tls_passthrough"`
	// ColdStartHeader adds X-Agimo-Cold-Start (seconds parked) to the
	// responses of requests that were parked; unset means on (issue 14).
	ColdStartHeader *bool `toml:"cold_start_header"`

	// Extras are a Gateway API rule's matches, weights and filters
	// (extras.go); never set from TOML.
	Extras `toml:"-"`
}

// WantsColdStartHeader reports whether responses to s's parked requests
// carry X-Agimo-Cold-Start (cold_start_header, default true).
func (s *Service) WantsColdStartHeader() bool {
	return s.ColdStartHeader == nil || *s.ColdStartHeader
}

// Workload kinds after normalisation of Service.Type.
const (
	KindDeployment  = "deployment"
	KindStatefulSet = "statefulset"
)

// Dial modes.
const (
	DialEndpoints = "endpoints"
	DialService   = "service"
)

// Request ID policies (Config.RequestID).
const (
	RequestIDTrust   = "trust"
	RequestIDReplace = "replace"
)

// Upstream protocols (Service.Protocol).
const (
	ProtocolAuto  = "auto"
	ProtocolHTTP1 = "http1"
	ProtocolH2C   = "h2c"
)

// Load reads, parses and validates the config file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	c, err := Parse(f)
	if c == nil {
		return nil, prefixFile(path, err)
	}
	// Parse returns a config along with unknown-key errors: validate it
	// anyway, so that all problems are reported in one round.
	c.File = path
	if err := errors.Join(prefixFile(path, err), c.Validate()); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes a TOML config. Unknown keys are errors, so that a typo
// (say "servcie_port") is not silently ignored. Parse does not apply
// defaults or check values: call Validate.
func Parse(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c := &Config{lines: keyLines(data)}
	// Decode generically first and check keys and value types against the
	// structs: BurntSushi/toml's own type errors carry no array index and
	// the line of the key's last occurrence, not of the faulty one.
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
		return nil, c.decodeError(err)
	}
	unknown, bad := c.checkKeys(raw)
	if len(bad) > 0 {
		return nil, joinSorted(append(unknown, bad...))
	}
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c); err != nil {
		return nil, c.decodeError(err)
	}
	return c, joinSorted(unknown)
}

// Error is one configuration error at a position in the file.
type Error struct {
	File string
	Line int    // 0 if unknown
	Key  string // e.g. "services[1].service_port"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func prefixFile(path string, err error) error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		errs := joined.Unwrap()
		for _, e := range errs {
			prefixFile(path, e)
		}
		return err
	}
	var ce *Error
	if errors.As(err, &ce) && ce.File == "" {
		ce.File = path
	}
	return err
}

// CatchAllHost is the host of an entry that serves the requests for hosts
// no other entry claims, or whose paths no other entry of their host
// accepts: an Ingress's defaultBackend, and rules without a host.
const CatchAllHost = "*"

// WithServices returns a copy of c (already validated) with extra entries
// appended after its own, validated as a whole: the routes from the
// cluster (package ingress) merged with the file's. Errors in the extra
// entries name them services[N] past the file's, without a line.
func (c *Config) WithServices(extra []Service) (*Config, error) {
	m := *c
	m.Services = append(slices.Clone(c.Services), extra...)
	m.TLSSecrets = slices.Clone(c.TLSSecrets)
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// CheckService validates one entry as it would be in c (already
// validated): the top-level settings it inherits are c's. It returns s
// normalised, with its defaults applied.
func (c *Config) CheckService(s Service) (Service, error) {
	m := Config{
		Timeout: c.Timeout, UpstreamTimeout: c.UpstreamTimeout, ClientHeaderTimeout: c.ClientHeaderTimeout,
		ClientBodyTimeout: c.ClientBodyTimeout, SendTimeout: c.SendTimeout, MaxHeaderSize: c.MaxHeaderSize,
		MaxConnections: c.MaxConnections, MaxParked: c.MaxParked, RequestID: c.RequestID,
		TLSSecrets: c.TLSSecrets, Services: []Service{s},
	}
	if err := m.Validate(); err != nil {
		return s, err
	}
	return m.Services[0], nil
}
