//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// managedBy marks the EndpointSlices the tests write, so kube-controller-manager's
// endpointslice controller (which owns the slices it creates for the same Service)
// leaves them alone, as it does for any other controller's slices.
const managedBy = "e2e.agimo.test"

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// newNamespace creates a namespace named after the test, deleted when it ends.
func newNamespace(t *testing.T) string {
	t.Helper()
	base := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = base[:40]
	}
	name := fmt.Sprintf("e2e-%s-%04x", strings.Trim(base, "-"), rand.IntN(1<<16))
	_, err := env.client.CoreV1().Namespaces().Create(ctx(t),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No wait: the namespace controller finishes it in the background.
		env.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// workload is a Deployment or StatefulSet at zero replicas behind a Service on port 80
// (port name "http", targetPort 8080), the shape Agimo's config points at.
type workload struct {
	NS, Name, Kind string // Kind: "deployment" or "statefulset"
	// AppProtocol of the Service port and of the test's EndpointSlice port ("" = none);
	// set by withAppProtocol.
	AppProtocol string
}

func (w workload) Host() string { return w.Name + "." + w.NS + ".e2e" }

// Config is the [[services]] entry for this workload, plus extra TOML lines.
func (w workload) Config(extra ...string) string { return w.ConfigFor(w.Host(), extra...) }

// ConfigFor is Config with another host (e.g. a wildcard).
func (w workload) ConfigFor(host string, extra ...string) string {
	return fmt.Sprintf("[[services]]\nhost = %q\ntype = %q\nnamespace = %q\nname = %q\nservice_name = %q\nservice_port = 80\n%s\n",
		host, w.Kind, w.NS, w.Name, w.Name, strings.Join(extra, "\n"))
}

func createWorkload(t *testing.T, ns, name, kind string) workload {
	t.Helper()
	w := workload{NS: ns, Name: name, Kind: kind}
	labels := map[string]string{"app": name}
	zero := int32(0)
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app",
			// Never pulled: there is no kubelet. The fake pod in a netns plays this container.
			Image: "e2e/upstream:never-pulled",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
	var err error
	switch kind {
	case "deployment":
		_, err = env.client.AppsV1().Deployments(ns).Create(ctx(t), &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       appsv1.DeploymentSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl},
		}, metav1.CreateOptions{})
	case "statefulset":
		_, err = env.client.AppsV1().StatefulSets(ns).Create(ctx(t), &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.StatefulSetSpec{Replicas: &zero, ServiceName: name,
				Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl},
		}, metav1.CreateOptions{})
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.client.CoreV1().Services(ns).Create(ctx(t), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{
			Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP,
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// withAppProtocol sets the Service port's appProtocol (e.g. kubernetes.io/h2c) and returns
// w, whose EndpointSlices then carry it too, as the endpointslice controller copies it.
func (w workload) withAppProtocol(t *testing.T, p string) workload {
	t.Helper()
	svc, err := env.client.CoreV1().Services(w.NS).Get(ctx(t), w.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.Ports[0].AppProtocol = &p
	if _, err := env.client.CoreV1().Services(w.NS).Update(ctx(t), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.AppProtocol = p
	return w
}

// scale sets replicas through the scale subresource (as KEDA does) and waits for
// kube-controller-manager to create that many Pods; it returns their names.
func (w workload) scale(t *testing.T, replicas int32) []string {
	t.Helper()
	if err := w.setReplicas(ctx(t), replicas); err != nil {
		t.Fatal(err)
	}
	return w.pods(t, replicas)
}

// setReplicas patches the scale subresource, as KEDA does; usable off the test goroutine.
func (w workload) setReplicas(c context.Context, replicas int32) error {
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	var err error
	if w.Kind == "deployment" {
		_, err = env.client.AppsV1().Deployments(w.NS).Patch(c, w.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "scale")
	} else {
		_, err = env.client.AppsV1().StatefulSets(w.NS).Patch(c, w.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "scale")
	}
	return err
}

// pods waits for kube-controller-manager to create n Pods of w (after a scale-up by
// anyone: the test, Agimo, a simulated KEDA) and returns their names.
func (w workload) pods(t *testing.T, replicas int32) []string {
	t.Helper()
	var names []string
	c := ctx(t)
	eventually(t, 60*time.Second, "pods of "+w.Name, func() bool {
		pods, err := env.client.CoreV1().Pods(w.NS).List(c, metav1.ListOptions{LabelSelector: "app=" + w.Name})
		if err != nil {
			return false
		}
		names = names[:0]
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				names = append(names, p.Name)
			}
		}
		return int32(len(names)) >= replicas
	})
	return names[:replicas]
}

// endpoint is one address of the test's EndpointSlice.
type endpoint struct {
	Pod                         *fakePod
	PodName                     string // the Pod object it stands for ("" = none)
	Ready, Serving, Terminating bool
}

func readyEndpoint(p *fakePod, podName string) endpoint {
	return endpoint{Pod: p, PodName: podName, Ready: true, Serving: true}
}

// setEndpoints creates or replaces the test's EndpointSlice for w, as the endpointslice
// controller would once the kubelet reports the pods ready.
func (w workload) setEndpoints(t *testing.T, eps ...endpoint) {
	t.Helper()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: w.Name + "-e2e",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: w.Name,
				discoveryv1.LabelManagedBy:   managedBy,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{
			Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP),
		}},
	}
	if w.AppProtocol != "" {
		slice.Ports[0].AppProtocol = ptr(w.AppProtocol)
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{
			Addresses: []string{e.Pod.IP},
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptr(e.Ready), Serving: ptr(e.Serving), Terminating: ptr(e.Terminating),
			},
		}
		if e.PodName != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: w.NS, Name: e.PodName}
		}
		if e.Pod.Port != 8080 {
			t.Fatalf("fake pods listen on 8080, got %d", e.Pod.Port)
		}
		slice.Endpoints = append(slice.Endpoints, ep)
	}
	api := env.client.DiscoveryV1().EndpointSlices(w.NS)
	old, err := api.Get(ctx(t), slice.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx(t), slice, metav1.CreateOptions{})
	case err == nil:
		slice.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx(t), slice, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("write EndpointSlice: %v", err)
	}
}

// deleteEndpoints removes the test's EndpointSlice (all pods gone).
func (w workload) deleteEndpoints(t *testing.T) {
	t.Helper()
	err := env.client.DiscoveryV1().EndpointSlices(w.NS).Delete(ctx(t), w.Name+"-e2e", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// eventually polls cond every 50ms until it is true, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
