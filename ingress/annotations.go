package ingress

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/agimo/agimo/conf"
)

// Annotations on a backend Service: its scale-to-zero settings, on the
// Service since several routes may share a backend. Each means what the
// TOML key of the same name (with "_" for "-") means.
const (
	AnnotationWorkload    = "agimo.dev/workload" // "deployment/NAME" or "statefulset/NAME"
	AnnotationTimeout     = "agimo.dev/timeout"
	AnnotationWake        = "agimo.dev/wake"
	AnnotationMinReplicas = "agimo.dev/min-replicas"
	AnnotationIdleAfter   = "agimo.dev/idle-after"
	AnnotationWaitingPage = "agimo.dev/waiting-page"
	AnnotationProbePaths  = "agimo.dev/probe-paths" // comma-separated
	AnnotationMaxParked   = "agimo.dev/max-parked"
)

// Settings are a backend Service's annotation settings; the zero value
// is no annotation.
type Settings struct {
	Type, Name  string // the workload; "" without agimo.dev/workload
	Timeout     conf.Duration
	IdleAfter   conf.Duration
	Wake        bool
	WaitingPage bool
	MinReplicas int // 0: the default
	MaxParked   int // 0: the default
	ProbePaths  []string
}

// Apply sets st in s, an entry for the Service: without a workload
// annotation the workload is taken to be the Deployment named as the
// Service, which matters only to wake and idle_after, and those need the
// annotation (ParseSettings).
func (st Settings) Apply(s *conf.Service) {
	s.Type, s.Name = st.Type, st.Name
	if s.Type == "" {
		s.Type, s.Name = conf.KindDeployment, s.ServiceName
	}
	s.Timeout, s.IdleAfter = st.Timeout, st.IdleAfter
	s.Wake, s.WaitingPage = st.Wake, st.WaitingPage
	s.MinReplicas, s.MaxParked = st.MinReplicas, st.MaxParked
	s.ProbePaths = st.ProbePaths
}

// ParseSettings reads svc's annotations and checks them as conf checks
// the TOML keys (conf.Config.CheckService, in base).
func ParseSettings(base *conf.Config, svc *corev1.Service) (Settings, error) {
	var st Settings
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("annotation %s: %s", key, fmt.Sprintf(format, args...)))
	}
	a := svc.Annotations
	if v, ok := a[AnnotationWorkload]; ok {
		kind, name, _ := strings.Cut(v, "/")
		switch strings.ToLower(kind) {
		case "deployment", "deploy":
			st.Type = conf.KindDeployment
		case "statefulset", "sts":
			st.Type = conf.KindStatefulSet
		default:
			bad(AnnotationWorkload, "%q: want deployment/NAME or statefulset/NAME", v)
		}
		st.Name = name
		if name == "" {
			bad(AnnotationWorkload, "%q: want deployment/NAME or statefulset/NAME", v)
		}
	}
	duration := func(key string, d *conf.Duration) {
		if v, ok := a[key]; ok {
			x, err := conf.ParseDuration(v)
			if err != nil {
				bad(key, "%v", err)
				return
			}
			*d = conf.Duration{Duration: x, Set: true}
		}
	}
	duration(AnnotationTimeout, &st.Timeout)
	duration(AnnotationIdleAfter, &st.IdleAfter)
	boolean := func(key string, b *bool) {
		if v, ok := a[key]; ok {
			x, err := strconv.ParseBool(v)
			if err != nil {
				bad(key, "%q: want true or false", v)
			}
			*b = x
		}
	}
	boolean(AnnotationWake, &st.Wake)
	boolean(AnnotationWaitingPage, &st.WaitingPage)
	integer := func(key string, n *int) {
		if v, ok := a[key]; ok {
			x, err := strconv.Atoi(v)
			if err != nil || x < 1 {
				// conf's default for an absent key is 0, so 0 is checked here.
				bad(key, "%q: must be an integer, at least 1", v)
			}
			*n = x
		}
	}
	integer(AnnotationMinReplicas, &st.MinReplicas)
	integer(AnnotationMaxParked, &st.MaxParked)
	if v, ok := a[AnnotationProbePaths]; ok {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				st.ProbePaths = append(st.ProbePaths, p)
			}
		}
	}
	if (st.Wake || st.IdleAfter.Set) && st.Type == "" {
		bad(AnnotationWorkload, "missing: %s and %s need the workload to scale", AnnotationWake, AnnotationIdleAfter)
	}
	if len(errs) == 0 {
		// The checks of the TOML keys, on an entry with these settings.
		s := conf.Service{Host: "settings.invalid", Namespace: svc.Namespace, ServiceName: svc.Name, ServicePort: 1}
		st.Apply(&s)
		if _, err := base.CheckService(s); err != nil {
			errs = append(errs, errors.New(stripKey(err)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Settings{}, fmt.Errorf("Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return st, nil
}
