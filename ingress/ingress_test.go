package ingress

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/agimo/agimo/conf"
)

func class(name string, isDefault bool) *networkingv1.IngressClass {
	ic := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: networkingv1.IngressClassSpec{Controller: ControllerName}}
	if isDefault {
		ic.Annotations = map[string]string{DefaultClassAnnotation: "true"}
	}
	return ic
}

func svc(ns, name string, ann map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec: corev1.ServiceSpec{Ports: ports, ClusterIP: "10.0.0.9"}}
}

func backend(name string, port any) networkingv1.IngressBackend {
	b := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name}}
	switch p := port.(type) {
	case int:
		b.Service.Port.Number = int32(p)
	case string:
		b.Service.Port.Name = p
	}
	return b
}

// ing makes an Ingress created at minute age; rules are "host path name port",
// host "-" for none, a path "=/x" for pathType Exact.
func ing(ns, name string, className *string, age int, rules ...string) *networkingv1.Ingress {
	i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, age, 0, 0, time.UTC))},
		Spec: networkingv1.IngressSpec{IngressClassName: className}}
	for _, r := range rules {
		f := strings.Fields(r)
		var port any = f[3]
		if n, err := strconv.Atoi(f[3]); err == nil {
			port = n
		}
		pt := networkingv1.PathTypePrefix
		if exact, ok := strings.CutPrefix(f[1], "="); ok {
			pt, f[1] = networkingv1.PathTypeExact, exact
		}
		if f[0] == "-" {
			f[0] = "" // no host: every host
		}
		i.Spec.Rules = append(i.Spec.Rules, networkingv1.IngressRule{Host: f[0],
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: f[1], PathType: &pt, Backend: backend(f[2], port)}}}}})
	}
	return i
}

func ptr(s string) *string { return &s }

func fileConfig(t *testing.T, src string) *conf.Config {
	t.Helper()
	c, err := conf.Parse(strings.NewReader(src))
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// started returns a controller on a fake clientset holding objs, synced.
func started(t *testing.T, opts Options, objs ...runtime.Object) (*Controller, *fake.Clientset, *record.FakeRecorder) {
	t.Helper()
	client := fake.NewClientset(objs...)
	rec := record.NewFakeRecorder(100)
	opts.Client, opts.Recorder, opts.Log = client, rec, zerolog.Nop()
	c := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c, client, rec
}

// routes renders merged entries past the file's: "host path -> svc:port".
func routes(cfg *conf.Config, skip int) []string {
	var out []string
	for _, s := range cfg.Services[skip:] {
		out = append(out, fmt.Sprintf("%s %s -> %s/%s:%d", s.Host, RulePath(&s), s.Namespace, s.ServiceName, s.ServicePort))
	}
	return out
}

func events(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

const tomlFile = `ingress_class = "agimo"
[[services]]
host = "a.test"
paths = ["/toml"]
type = "deployment"
namespace = "apps"
name = "t"
service_name = "t"
service_port = 80
`

// TestTranslate: classes (named, default, foreign), host and path rules,
// a rule without host, defaultBackend, tls, named ports, and the conflict
// order (TOML, then the oldest Ingress, then namespace/name).
func TestTranslate(t *testing.T) {
	web := svc("apps", "web", nil, corev1.ServicePort{Name: "http", Port: 8080})
	other := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"},
		Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}
	withTLS := ing("apps", "tls", ptr("agimo"), 3, "b.test / web http")
	withTLS.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"b.test"}, SecretName: "b-cert"}}
	def := ing("apps", "def", ptr("agimo"), 4)
	b := backend("web", 80)
	def.Spec.DefaultBackend = &b
	objs := []runtime.Object{
		class("agimo", true), other, web, withTLS, def,
		ing("apps", "first", ptr("agimo"), 1, "a.test /api api 80", "a.test /toml api 80", "a.test =/api web 80"),
		ing("apps", "second", nil, 2, "a.test /api web 80", "a.test /web/ web 80", "- /any web 80"),
		ing("apps", "foreign", ptr("nginx"), 0, "c.test / web 80"),
		ing("apps", "badport", ptr("agimo"), 5, "d.test / web nope"),
		ing("apps", "same-age-b", ptr("agimo"), 6, "e.test / b 80"),
		ing("apps", "same-age-a", ptr("agimo"), 6, "e.test / a 80"),
	}
	c, _, rec := started(t, Options{}, objs...)
	file := fileConfig(t, tomlFile)
	merged, err := c.Merge(file)
	if err != nil {
		t.Fatalf("Merge = %v", err)
	}
	got := routes(merged, 1)
	want := []string{
		"a.test /api -> apps/api:80",
		"a.test =/api -> apps/web:80",
		"a.test /web -> apps/web:80",
		"* /any -> apps/web:80",
		"b.test / -> apps/web:8080",
		"* / -> apps/web:80",
		"e.test / -> apps/a:80",
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes:\n got %q\nwant %q", got, want)
	}
	for _, s := range merged.Services[1:] {
		if wantSecret := map[string]string{"b.test": "b-cert"}[s.Host]; s.TLSSecret != wantSecret {
			t.Errorf("%s tls_secret = %q; want %q", s.Host, s.TLSSecret, wantSecret)
		}
		// Each entry names its Ingress, for the status page.
		if wantSrc, ok := map[string]string{"b.test": "Ingress apps/tls", "e.test": "Ingress apps/same-age-a"}[s.Host]; ok && s.Source != wantSrc {
			t.Errorf("%s source = %q; want %q", s.Host, s.Source, wantSrc)
		} else if !strings.HasPrefix(s.Source, "Ingress apps/") {
			t.Errorf("%s %v source = %q; want its Ingress", s.Host, s.Paths, s.Source)
		}
	}
	if merged.Services[0].Source != "" {
		t.Errorf("the file's entry source = %q; want empty", merged.Services[0].Source)
	}
	evs := strings.Join(events(rec), "\n")
	for _, w := range []string{
		`RouteConflict host "a.test" path "/toml" is already served by the config file`,
		`RouteConflict host "a.test" path "/api" is already served by Ingress apps/first`,
		`RouteConflict host "e.test" path "/" is already served by Ingress apps/same-age-a`,
		`BadRule rules[0].http.paths[0]: Service apps/web has no port named "nope"`,
	} {
		if !strings.Contains(evs, w) {
			t.Errorf("events lack %q; got:\n%s", w, evs)
		}
	}
	// The same problems are not reported again on the next merge.
	if _, err := c.Merge(file); err != nil {
		t.Fatal(err)
	}
	if again := events(rec); len(again) != 0 {
		t.Errorf("second merge events = %q; want none", again)
	}
	// No class in the file: no routes from the cluster.
	off := fileConfig(t, strings.Replace(tomlFile, `ingress_class = "agimo"`, "", 1))
	if m, err := c.Merge(off); err != nil || len(m.Services) != 1 {
		t.Errorf("Merge(no class) = %d services, %v; want 1, nil", len(m.Services), err)
	}
}

// TestNoDefaultClass: without the default annotation, an Ingress without
// class is not served; nor is one of a class whose controller is not Agimo's.
func TestNoDefaultClass(t *testing.T) {
	c, _, _ := started(t, Options{}, class("agimo", false),
		ing("apps", "none", nil, 1, "a.test / web 80"),
		ing("apps", "mine", ptr("agimo"), 1, "b.test / web 80"))
	m, err := c.Merge(fileConfig(t, "ingress_class = \"agimo\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := routes(m, 0); !slices.Equal(got, []string{"b.test / -> apps/web:80"}) {
		t.Errorf("routes = %q; want only b.test", got)
	}
}

// TestAnnotations: good annotations become the entry's settings; a bad
// one is an Event on the Service and the previous settings stay.
func TestAnnotations(t *testing.T) {
	good := map[string]string{
		AnnotationWorkload: "statefulset/db", AnnotationTimeout: "90s", AnnotationWake: "true",
		AnnotationMinReplicas: "2", AnnotationIdleAfter: "5m", AnnotationWaitingPage: "true",
		AnnotationProbePaths: "/healthz, /api/ready", AnnotationMaxParked: "7",
	}
	c, client, rec := started(t, Options{}, class("agimo", false), svc("apps", "web", good),
		ing("apps", "i", ptr("agimo"), 1, "a.test / web 80", "a.test /api web 80", "a.test =/healthz web 80"))
	file := fileConfig(t, "ingress_class = \"agimo\"\n")
	m, err := c.Merge(file)
	if err != nil {
		t.Fatal(err)
	}
	check := func(m *conf.Config) {
		t.Helper()
		s := m.Services[0]
		if s.Type != conf.KindStatefulSet || s.Name != "db" || s.Timeout.Duration != 90*time.Second || !s.Wake ||
			s.MinReplicas != 2 || s.IdleAfter.Duration != 5*time.Minute || !s.WaitingPage || s.MaxParked != 7 {
			t.Errorf("settings = %+v; want the annotations'", s)
		}
		// Each rule keeps the probe paths routed to it: the exact
		// /healthz takes /healthz from /.
		if len(m.Services[0].ProbePaths) != 0 || !slices.Equal(m.Services[1].ProbePaths, []string{"/api/ready"}) ||
			!slices.Equal(m.Services[2].ProbePaths, []string{"/healthz"}) {
			t.Errorf("probe paths = %q, %q, %q; want [], [/api/ready], [/healthz]",
				m.Services[0].ProbePaths, m.Services[1].ProbePaths, m.Services[2].ProbePaths)
		}
	}
	check(m)

	for _, tt := range []struct{ key, value, want string }{
		{AnnotationTimeout, "soon", "agimo.dev/timeout"},
		{AnnotationTimeout, "-1s", "agimo.dev/timeout"},
		{AnnotationIdleAfter, "0s", "idle_after: must be positive"},
		{AnnotationWake, "yes please", "agimo.dev/wake"},
		{AnnotationMinReplicas, "0", "agimo.dev/min-replicas"},
		{AnnotationMaxParked, "x", "agimo.dev/max-parked"},
		{AnnotationWorkload, "pod/x", "agimo.dev/workload"},
		{AnnotationProbePaths, "healthz", `probe_paths: path "healthz" must start with /`},
	} {
		bad := svc("apps", "web", map[string]string{})
		for k, v := range good {
			bad.Annotations[k] = v
		}
		bad.Annotations[tt.key] = tt.value
		if _, err := client.CoreV1().Services("apps").Update(context.Background(), bad, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			s, _ := c.services.Services("apps").Get("web")
			return s != nil && s.Annotations[tt.key] == tt.value
		})
		m, err := c.Merge(file)
		if err != nil {
			t.Fatal(err)
		}
		check(m) // the previous settings stay
		evs := strings.Join(events(rec), "\n")
		if !strings.Contains(evs, "Warning BadAnnotation Service apps/web: ") || !strings.Contains(evs, tt.want) {
			t.Errorf("%s=%q: events %q; want a BadAnnotation naming %q", tt.key, tt.value, evs, tt.want)
		}
	}
	// wake without a workload is refused too.
	nowl := svc("apps", "other", map[string]string{AnnotationWake: "true"})
	if _, err := ParseSettings(file, nowl); err == nil || !strings.Contains(err.Error(), "agimo.dev/workload: missing") {
		t.Errorf("wake without workload = %v; want agimo.dev/workload: missing", err)
	}
}

// waitFor waits for the informers to show a change made through the
// client: cond is polled, as the informers signal nothing a test can
// wait on directly.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not met")
}

// TestStatus: status.loadBalancer of served Ingresses only, from the
// publish address (IP and host name) or the publish Service (its
// LoadBalancer ingress, else its ClusterIP).
func TestStatus(t *testing.T) {
	pub := svc("agimo", "agimo", nil)
	tests := []struct {
		name string
		opts Options
		lb   []corev1.LoadBalancerIngress
		want []networkingv1.IngressLoadBalancerIngress
	}{
		{"address", Options{PublishAddress: "192.0.2.1, lb.example"}, nil,
			[]networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.1"}, {Hostname: "lb.example"}}},
		{"service clusterIP", Options{PublishService: "agimo/agimo"}, nil,
			[]networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.9"}}},
		{"service loadBalancer", Options{PublishService: "agimo/agimo"}, []corev1.LoadBalancerIngress{{IP: "203.0.113.5"}},
			[]networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.5"}}},
		// Another replica holds the status Lease (package leader).
		{"not leading", Options{PublishAddress: "192.0.2.1", Leading: func() bool { return false }}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pub.DeepCopy()
			p.Status.LoadBalancer.Ingress = tt.lb
			c, client, _ := started(t, tt.opts, class("agimo", false), p,
				ing("apps", "mine", ptr("agimo"), 1, "a.test / web 80"),
				ing("apps", "theirs", ptr("nginx"), 1, "b.test / web 80"))
			if _, err := c.Merge(fileConfig(t, "ingress_class = \"agimo\"\n")); err != nil {
				t.Fatal(err)
			}
			c.WriteStatus(context.Background())
			mine, _ := client.NetworkingV1().Ingresses("apps").Get(context.Background(), "mine", metav1.GetOptions{})
			if got := mine.Status.LoadBalancer.Ingress; !reflect.DeepEqual(got, tt.want) && (len(got) > 0 || len(tt.want) > 0) {
				t.Errorf("mine status = %+v; want %+v", got, tt.want)
			}
			theirs, _ := client.NetworkingV1().Ingresses("apps").Get(context.Background(), "theirs", metav1.GetOptions{})
			if got := theirs.Status.LoadBalancer.Ingress; len(got) != 0 {
				t.Errorf("theirs status = %+v; want untouched", got)
			}
		})
	}
}

// TestRunDebounces: a change to a watched object calls Changed.
func TestRunDebounces(t *testing.T) {
	changed := make(chan struct{}, 10)
	c, client, _ := started(t, Options{Changed: func() { changed <- struct{}{} }}, class("agimo", false))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := client.NetworkingV1().Ingresses("apps").Create(ctx, ing("apps", "new", ptr("agimo"), 1, "a.test / web 80"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	<-changed
}
