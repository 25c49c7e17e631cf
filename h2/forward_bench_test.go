package h2_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/agimo/agimo/conf"
	"github.com/agimo/agimo/core"
	"github.com/agimo/agimo/h2"
	"github.com/agimo/agimo/route"
	"github.com/agimo/agimo/watch"
)

// benchStack is the HTTP/2 front end on a ready service whose endpoint is
// up, for the forwarding benchmarks: the real watcher on client-go's fake
// clientset, the core, and h2c on a loopback listener.
func benchStack(b *testing.B, upAddr, appProtocol string) (addr string) {
	b.Helper()
	cfg, err := conf.Parse(strings.NewReader(`
[[services]]
host = "app.test"
type = "deployment"
namespace = "apps"
name = "app"
service_name = "app"
service_port = 80
`))
	if err != nil {
		b.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	kube := fake.NewClientset()
	ctx := context.Background()
	_, _ = kube.CoreV1().Services("apps").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "apps"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromInt(8080)}}},
	}, metav1.CreateOptions{})
	host, ps, _ := net.SplitHostPort(upAddr)
	p, _ := strconv.Atoi(ps)
	name, port, ready, proto := "http", int32(p), true, corev1.ProtocolTCP
	var ap *string
	if appProtocol != "" {
		ap = &appProtocol
	}
	_, _ = kube.DiscoveryV1().EndpointSlices("apps").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "app-0", Namespace: "apps", Labels: map[string]string{discoveryv1.LabelServiceName: "app"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto, AppProtocol: ap}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}, metav1.CreateOptions{})
	log := zerolog.Nop()
	set := metrics.NewSet()
	w := watch.New(kube, route.Keys(cfg), log, set)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Start(sctx); err != nil {
		b.Fatal(err)
	}
	c, err := core.New(cfg, w, core.Options{Log: log, Metrics: set})
	if err != nil {
		b.Fatal(err)
	}
	srv := h2.New(c, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(conn, false)
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = c.Close(ctx)
		w.Close()
	})
	for st := w.Service(route.Keys(cfg)[0]).State(); !st.Ready; st = w.Service(route.Keys(cfg)[0]).State() {
		<-st.Changed()
	}
	return ln.Addr().String()
}

// BenchmarkH2Forward: a small GET over h2c through the HTTP/2 front end to
// an HTTP/1.1 upstream (the core's fasthttp pools), beside the same
// request sent directly to the upstream over HTTP/1.1.
func BenchmarkH2Forward(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer up.Close()
	run := func(b *testing.B, c *http.Client, url, host string) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = host
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	b.Run("direct-h1", func(b *testing.B) { run(b, http.DefaultClient, up.URL+"/", "app.test") })
	b.Run("agimo-h2c-to-h1", func(b *testing.B) {
		addr := benchStack(b, up.Listener.Addr().String(), "")
		run(b, h2cClient(b, addr), "http://"+addr+"/", "app.test")
	})
	h2up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	h2up.EnableHTTP2 = true
	h2up.Config.Protocols = new(http.Protocols)
	h2up.Config.Protocols.SetUnencryptedHTTP2(true)
	h2up.Start()
	defer h2up.Close()
	b.Run("agimo-h2c-to-h2c", func(b *testing.B) {
		addr := benchStack(b, h2up.Listener.Addr().String(), route.AppProtocolH2C)
		run(b, h2cClient(b, addr), "http://"+addr+"/", "app.test")
	})
}
