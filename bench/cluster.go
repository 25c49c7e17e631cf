package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	benchNS     = "agimo-bench"
	servicePort = 80
	targetPort  = 8080
	// fakePodIP stands in for a pod in the EndpointSlices the suite
	// writes. Nothing ever dials it: every service has an address
	// override to a loopback upstream, and readiness is all the slice is
	// for. It lies in the range hack/netns.sh uses for simulated pods,
	// above the 1..250 it hands out, so it never is one of theirs.
	fakePodIP = "10.213.251.2"
	// managedBy keeps kube-controller-manager's endpointslice
	// controller (if it runs) away from the suite's slices.
	managedBy = "bench.agimo.test"
)

// Services the suite creates: three always ready, one that flips.
var benchServices = []string{"hot-http", "hot-web", "hot-grpc", "cold"}

// cluster is the API server the suite writes readiness to: its own local
// control plane (hack/controlplane/up.sh), or one given by -kubeconfig.
type cluster struct {
	root       string
	cpDir      string // state dir of a control plane we started; "" if not ours
	kubeconfig string
	client     kubernetes.Interface
}

// startCluster brings up a control plane of the suite's own with
// hack/controlplane/up.sh (building its binaries on first use, cached),
// without kube-controller-manager: nothing here needs Pods.
func startCluster(root string) (*cluster, error) {
	c := &cluster{root: root, cpDir: filepath.Join(os.TempDir(), fmt.Sprintf("agimo-bench-cp-%d", os.Getpid()))}
	fmt.Fprintf(os.Stderr, "bench: starting a local control plane in %s (hack/controlplane/up.sh)\n", c.cpDir)
	cmd := exec.Command(filepath.Join(root, "hack", "controlplane", "up.sh"))
	cmd.Env = append(os.Environ(), "AGIMO_CP_DIR="+c.cpDir, "AGIMO_CP_NO_KCM=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		c.stop() // up.sh cleans up after itself; this covers a kill mid-way
		return nil, fmt.Errorf("control plane: up.sh: %w", err)
	}
	kc, err := parseKubeconfigExport(out.String())
	if err != nil {
		c.stop()
		return nil, err
	}
	c.kubeconfig = kc
	if err := c.connect(); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// parseKubeconfigExport finds up.sh's one line of output,
// `export KUBECONFIG=PATH`.
func parseKubeconfigExport(out string) (string, error) {
	for line := range strings.SplitSeq(out, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "export KUBECONFIG="); ok && p != "" {
			return p, nil
		}
	}
	return "", fmt.Errorf("control plane: up.sh printed no `export KUBECONFIG=` line: %q", out)
}

// existingCluster uses a cluster the user runs.
func existingCluster(kubeconfig string) (*cluster, error) {
	c := &cluster{kubeconfig: kubeconfig}
	return c, c.connect()
}

func (c *cluster) connect() error {
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", c.kubeconfig, err)
	}
	// The release scenario's event is one write; client-side throttling
	// (5 QPS by default) must never delay it.
	rc.QPS, rc.Burst = 1000, 1000
	if c.client, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	return nil
}

// stop tears down a control plane we started (down.sh stops exactly the
// PIDs up.sh recorded and removes the state dir).
func (c *cluster) stop() {
	if c == nil || c.cpDir == "" {
		return
	}
	cmd := exec.Command(filepath.Join(c.root, "hack", "controlplane", "down.sh"))
	cmd.Env = append(os.Environ(), "AGIMO_CP_DIR="+c.cpDir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: control plane: down.sh: %v\n", err)
	}
}

// setup creates the namespace, the Services and their EndpointSlices:
// hot-* ready, cold not ready.
func (c *cluster) setup(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace: %w", err)
	}
	for _, name := range benchServices {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
				Name: "http", Port: servicePort, TargetPort: intstr.FromInt32(targetPort), Protocol: corev1.ProtocolTCP,
			}}},
		}
		_, err := c.client.CoreV1().Services(benchNS).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create service %s: %w", name, err)
		}
		if _, err := c.setReady(ctx, name, name != "cold"); err != nil {
			return err
		}
	}
	return nil
}

// setReady creates or updates the Service's EndpointSlice with one
// endpoint whose ready condition is ready. It returns when the write was
// sent: the readiness event's time.
func (c *cluster) setReady(ctx context.Context, service string, ready bool) (time.Time, error) {
	api := c.client.DiscoveryV1().EndpointSlices(benchNS)
	name := service + "-bench"
	old, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return time.Time{}, fmt.Errorf("get endpointslice %s: %w", name, err)
	}
	slice := benchSlice(service, ready)
	var sent time.Time
	if apierrors.IsNotFound(err) {
		sent = time.Now()
		_, err = api.Create(ctx, slice, metav1.CreateOptions{})
	} else {
		slice.ResourceVersion = old.ResourceVersion
		sent = time.Now()
		_, err = api.Update(ctx, slice, metav1.UpdateOptions{})
	}
	if err != nil {
		return sent, fmt.Errorf("write endpointslice %s: %w", name, err)
	}
	return sent, nil
}

func ptr[T any](v T) *T { return &v }

// benchSlice is the EndpointSlice the suite writes for service: one
// endpoint, fakePodIP, ready or not.
func benchSlice(service string, ready bool) *discoveryv1.EndpointSlice {
	name := service + "-bench"
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: service,
			discoveryv1.LabelManagedBy:   managedBy,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{
			Name: ptr("http"), Port: ptr(int32(targetPort)), Protocol: ptr(corev1.ProtocolTCP),
		}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{fakePodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(ready), Terminating: ptr(false)},
		}},
	}
}
