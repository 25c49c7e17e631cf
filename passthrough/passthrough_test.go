package passthrough_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agimo/agimo/accesslog"
	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/passthrough"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/watch"
)

const cfgTOML = `
[[services]]
host = "pass.test"
type = "deployment"
namespace = "apps"
name = "pass"
service_name = "pass"
service_port = 443
tls_passthrough = true

[[services]]
host = "cold.test"
type = "deployment"
namespace = "apps"
name = "cold"
service_name = "cold"
service_port = 443
tls_passthrough = true
timeout = "200ms"
`

// lines hands each access log line, decoded, to a channel.
type lines struct{ c chan map[string]any }

func (l *lines) Write(p []byte) (int, error) {
	for _, s := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m = map[string]any{"undecodable": s}
		}
		l.c <- m
	}
	return len(p), nil
}

// TestAccessLog: a passed-through connection is one access log line at
// its end, with the bytes each way; one whose service stays cold is
// logged with the park's reason.
func TestAccessLog(t *testing.T) {
	cfg, err := conf.Parse(strings.NewReader(cfgTOML))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset()
	for _, name := range []string{"pass", "cold"} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(8443)}}}}
		if _, err := kube.CoreV1().Services("apps").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The app: echoes what it reads.
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var appConns sync.WaitGroup
	defer func() { app.Close(); appConns.Wait() }()
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			appConns.Go(func() { defer c.Close(); io.Copy(c, c) })
		}
	}()
	host, ps, _ := net.SplitHostPort(app.Addr().String())
	p, _ := strconv.Atoi(ps)
	ready := true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "pass-0", Namespace: "apps", Labels: map[string]string{discoveryv1.LabelServiceName: "pass"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new("https"), Port: new(int32(p)), Protocol: new(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	if _, err := kube.DiscoveryV1().EndpointSlices("apps").Create(context.Background(), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	set := metrics.NewSet()
	w := watch.New(kube, route.Keys(cfg), log, set)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	out := &lines{c: make(chan map[string]any, 16)}
	al, err := accesslog.New(out, accesslog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close(ctx)
	c, err := core.New(cfg, w, core.Options{Log: log, Metrics: set, AccessLog: al})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	srv := passthrough.New(c)
	defer srv.Shutdown(ctx)
	// Wait until the informer has seen the slice.
	svc := w.Service(route.Keys(cfg)[0])
	for st := svc.State(); !st.Ready; st = svc.State() {
		select {
		case <-st.Changed():
		case <-ctx.Done():
			t.Fatal("pass.test never ready")
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	defer func() { ln.Close(); served.Wait() }()
	sni := make(chan string, 2)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			name := <-sni
			served.Go(func() { srv.Serve(conn, name) })
		}
	}()
	next := func() map[string]any {
		select {
		case m := <-out.c:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no access log line")
			return nil
		}
	}

	sni <- "pass.test"
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "hello")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	conn.Close()
	want(t, next(), map[string]any{"proto": "passthrough", "host": "pass.test", "route": "pass.test", "status": 0,
		"bytes_in": 5, "bytes_out": 5, "upstream": app.Addr().String(), "cold_start": false, "reason": nil})

	sni <- "cold.test"
	conn, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	want(t, next(), map[string]any{"proto": "passthrough", "route": "cold.test", "status": 503,
		"reason": "park_timeout", "cold_start": true})
}

func want(t *testing.T, line, fields map[string]any) {
	t.Helper()
	for k, w := range fields {
		if fmt.Sprint(line[k]) != fmt.Sprint(w) {
			t.Errorf("log %s = %v; want %v (line %v)", k, line[k], w, line)
		}
	}
}
