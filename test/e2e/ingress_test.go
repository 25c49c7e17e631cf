//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ingressPath is one path rule: path (Prefix) to a Service's port by number or name.
func ingressPath(path, svc string, port int32, portName string) networkingv1.HTTPIngressPath {
	pt := networkingv1.PathTypePrefix
	b := &networkingv1.IngressServiceBackend{Name: svc}
	b.Port.Number, b.Port.Name = port, portName
	return networkingv1.HTTPIngressPath{Path: path, PathType: &pt, Backend: networkingv1.IngressBackend{Service: b}}
}

// exactPath makes p's pathType Exact.
func exactPath(p networkingv1.HTTPIngressPath) networkingv1.HTTPIngressPath {
	pt := networkingv1.PathTypeExact
	p.PathType = &pt
	return p
}

func ingressRule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
		HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

// Issue 12: an Ingress of Agimo's class with two hosts and path rules (Prefix, a port by
// name, Exact) to two Services,
// one hot and one cold; the cold one is woken through its Service's annotations
// (agimo.dev/workload, agimo.dev/wake), its request parked meanwhile and released on
// readiness, while the Ingress is changed under it; status.loadBalancer is written from
// --publish-address; a conflict and a bad annotation are Events; a deleted Ingress's hosts
// go, or pass to the Ingress that had lost them.
func TestIngress(t *testing.T) {
	ns := newNamespace(t)
	class := ns // IngressClasses are cluster-wide: one per test run
	_, err := env.client.NetworkingV1().IngressClasses().Create(ctx(t), &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: class},
		Spec:       networkingv1.IngressClassSpec{Controller: "agimo.dev/ingress-controller"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		env.client.NetworkingV1().IngressClasses().Delete(context.Background(), class, metav1.DeleteOptions{})
	})
	hot := createWorkload(t, ns, "hot", "deployment")
	cold := createWorkload(t, ns, "cold", "deployment")
	svc, err := env.client.CoreV1().Services(ns).Get(ctx(t), "cold", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Annotations = map[string]string{"agimo.dev/workload": "deployment/cold", "agimo.dev/wake": "true"}
	if _, err := env.client.CoreV1().Services(ns).Update(ctx(t), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	hotPod, coldPod := startPod(t, "hot-0"), startPod(t, "cold-0")
	hot.setEndpoints(t, readyEndpoint(hotPod, ""))

	hostA, hostB, hostC := "a."+ns+".e2e", "b."+ns+".e2e", "c."+ns+".e2e"
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{
			ingressRule(hostA, ingressPath("/", "hot", 80, ""), ingressPath("/api", "cold", 0, "http"),
				exactPath(ingressPath("/api/status", "hot", 80, ""))),
			ingressRule(hostB, ingressPath("/", "cold", 80, "")),
		}},
	}
	ingAPI := env.client.NetworkingV1().Ingresses(ns)
	created, err := ingAPI.Create(ctx(t), ing, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := startAgimo(t, "timeout = '60s'\ningress_class = '"+class+"'\n",
		agimoOpts{args: []string{"--publish-address", "192.0.2.10"}})

	// The hot Service answers at once; path rules split host a.
	expectFrom(t, a.get(hostA, "/"), hotPod)
	expectFrom(t, a.get(hostA, "/other"), hotPod)
	expectFrom(t, a.get(hostA, "/api/status"), hotPod) // Exact, before the cold /api prefix
	eventually(t, 20*time.Second, "status.loadBalancer written", func() bool {
		got, err := ingAPI.Get(ctx(t), "web", metav1.GetOptions{})
		return err == nil && len(got.Status.LoadBalancer.Ingress) == 1 && got.Status.LoadBalancer.Ingress[0].IP == "192.0.2.10"
	})

	// The cold Service: parked, woken by its annotations.
	up := cold.watchScaleUp(t)
	api := a.getAsync(hostA, "/api/x")
	a.waitParked(t, hostA, 1)
	up.wait(t, 20*time.Second)

	// A hot change of the Ingress while the request is parked: a third host.
	cur, err := ingAPI.Get(ctx(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Rules = append(cur.Spec.Rules, ingressRule(hostC, ingressPath("/", "hot", 80, "")))
	if _, err := ingAPI.Update(ctx(t), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	a.waitLog(t, 20*time.Second, "ingress: route added", hostC)
	eventually(t, 20*time.Second, "the new host served", func() bool { return a.get(hostC, "/").Status == 200 })
	expectFrom(t, a.get(hostC, "/"), hotPod)
	if got := a.metric(t, series("agimo_parked_requests", hostA)); got != 1 {
		t.Errorf("parked on %s after the change = %v; want 1 (kept)", hostA, got)
	}

	// Ready: the parked request is released to the cold pod, and host b reaches it too.
	cold.bootPod(t, coldPod)
	expectFrom(t, awaitResult(t, api, 30*time.Second), coldPod)
	expectFrom(t, a.get(hostB, "/"), coldPod)
	if got := a.metric(t, series("agimo_wakeups_total", hostA)); got != 1 {
		t.Errorf("agimo_wakeups_total{host=%q} = %v; want 1", hostA, got)
	}

	// A younger Ingress claiming a served host and path loses, with an Event on it; a bad
	// annotation is an Event on its Service, whose settings stay.
	late := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: ns},
		Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{
			ingressRule(hostB, ingressPath("/", "hot", 80, "")),
		}},
	}
	// creationTimestamp has whole seconds: "late" must be created in a later
	// second than "web", else the tie goes to the name ("late" < "web").
	time.Sleep(time.Until(created.CreationTimestamp.Add(time.Second)))
	if _, err := ingAPI.Create(ctx(t), late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err = env.client.CoreV1().Services(ns).Get(ctx(t), "cold", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Annotations["agimo.dev/timeout"] = "soon"
	if _, err := env.client.CoreV1().Services(ns).Update(ctx(t), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ kind, name, reason string }{
		{"Ingress", "late", "RouteConflict"}, {"Service", "cold", "BadAnnotation"},
	} {
		eventually(t, 20*time.Second, want.reason+" Event on "+want.kind+" "+want.name, func() bool {
			evs, err := env.client.CoreV1().Events(ns).List(ctx(t), metav1.ListOptions{})
			if err != nil {
				return false
			}
			for _, e := range evs.Items {
				if e.InvolvedObject.Kind == want.kind && e.InvolvedObject.Name == want.name && e.Reason == want.reason && e.Type == "Warning" {
					return true
				}
			}
			return false
		})
	}
	expectFrom(t, a.get(hostB, "/"), coldPod) // still the oldest Ingress's

	// The Ingress removed: its hosts are gone.
	if err := ingAPI.Delete(ctx(t), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "routes of the deleted Ingress removed", func() bool {
		return a.get(hostA, "/").Status == 404
	})
	// Host b now goes to the younger Ingress, which had lost it.
	eventually(t, 20*time.Second, "host b taken over by the younger Ingress", func() bool {
		r := a.get(hostB, "/")
		return r.Status == 200 && strings.Contains(r.Body, "pod="+hotPod.Name+" ")
	})
}
