//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// canI asks the API server's authorizer whether ServiceAccount ns/name may do verb on
// resource[/sub] name in namespace: in group apps, or coordination.k8s.io for leases.
func canI(t *testing.T, saNS, sa, namespace, verb, resource, sub, name string) bool {
	t.Helper()
	group := "apps"
	if resource == "leases" {
		group = "coordination.k8s.io"
	}
	r, err := env.client.AuthorizationV1().SubjectAccessReviews().Create(ctx(t), &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + saNS + ":" + sa,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: namespace, Verb: verb, Group: group, Resource: resource, Subresource: sub, Name: name,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

// Agimo with exactly the chart's RBAC (scaling.enabled = auto, the default) wakes a workload
// and scales it back to zero when idle; the chart grants that for the workloads whose
// service sets wake/idle_after only, by name, in their namespace. With scaling.enabled =
// false the wake-up is refused by the API server, and Agimo says so.
func TestChartRBACScaling(t *testing.T) {
	for _, mode := range []string{"clusterrole", "namespaced"} {
		t.Run(mode, func(t *testing.T) {
			agimoNS, appNS := newNamespace(t), newNamespace(t)
			release := "agimo-" + agimoNS[len(agimoNS)-4:]
			w := createWorkload(t, appNS, "web", "deployment")
			plain := createWorkload(t, appNS, "plain", "deployment") // configured, but no wake/idle_after
			cfg := "timeout = '60s'\n" + w.Config("wake = true", "idle_after = '3s'") + plain.Config()
			args := []string{"--set-file", "config=" + writeTemp(t, cfg)}
			if mode == "namespaced" {
				args = append(args, "--set", "rbac.namespaces={"+appNS+"}")
			}
			installChartRBAC(t, agimoNS, release, args...)
			// The API server's authorizer learns new Roles and bindings from its
			// own informers, a moment after helm has created them: wait until
			// the first granted permission shows before judging the table (a
			// permission that is absent cannot be early).
			deadline := time.Now().Add(10 * time.Second)
			for !canI(t, agimoNS, release, appNS, "get", "deployments", "scale", "web") && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}

			for _, c := range []struct {
				ns, verb, resource, sub, name string
				want                          bool
			}{
				{appNS, "get", "deployments", "scale", "web", true},
				{appNS, "update", "deployments", "scale", "web", true},
				{appNS, "patch", "deployments", "scale", "web", true},
				{appNS, "get", "deployments", "", "web", false},
				{appNS, "patch", "deployments", "", "web", false},
				{appNS, "update", "deployments", "", "web", false},
				{appNS, "delete", "deployments", "", "web", false},
				{appNS, "list", "deployments", "", "", false},
				{appNS, "update", "deployments", "scale", "plain", false},
				{appNS, "patch", "deployments", "", "plain", false},
				{appNS, "update", "statefulsets", "scale", "web", false},
				{agimoNS, "update", "deployments", "scale", "web", false}, // same name, other namespace
				{appNS, "get", "leases", "", "agimo-deployment-web", true},
				{appNS, "update", "leases", "", "agimo-deployment-web", true},
				{appNS, "create", "leases", "", "", true},
				{appNS, "delete", "leases", "", "agimo-deployment-web", false},
				{appNS, "update", "leases", "", "agimo-deployment-plain", false},
				{agimoNS, "create", "leases", "", "", false},
			} {
				if got := canI(t, agimoNS, release, c.ns, c.verb, c.resource, c.sub, c.name); got != c.want {
					res := c.resource
					if c.sub != "" {
						res += "/" + c.sub
					}
					t.Errorf("chart RBAC: %s %s %q in %s allowed = %v; want %v", c.verb, res, c.name, c.ns, got, c.want)
				}
			}

			kc := tokenKubeconfig(t, agimoNS, release)
			pod := startPod(t, "web-rbac-scale")
			a := startAgimo(t, cfg, agimoOpts{kubeconfig: kc})
			up := w.watchScaleUp(t)
			parked := a.getAsync(w.Host(), "/")
			up.wait(t, 20*time.Second)
			w.bootPod(t, pod)
			expectFrom(t, awaitResult(t, parked, 30*time.Second), pod)
			// idle_after: the activity Lease (create, get, update) and the scale-down (get,
			// update scale).
			w.waitReplicas(t, 0, 30*time.Second)
			if _, err := w.lastActivity(t); err != nil {
				t.Errorf("no activity Lease for the workload: %v", err)
			}
			_, wakeErrs := wakeSeries(w.Host())
			if n := a.metric(t, wakeErrs); n != 0 {
				t.Errorf("agimo_wakeup_errors_total = %v; want 0", n)
			}
			if logs := a.logs.String(); strings.Contains(logs, "forbidden") {
				t.Errorf("agimo logged a forbidden request with the chart's RBAC")
			}
		})
	}

	t.Run("disabled", func(t *testing.T) {
		agimoNS, appNS := newNamespace(t), newNamespace(t)
		release := "agimo-" + agimoNS[len(agimoNS)-4:]
		w := createWorkload(t, appNS, "web", "deployment")
		cfg := "timeout = '60s'\n" + w.Config("wake = true")
		installChartRBAC(t, agimoNS, release, "--set-file", "config="+writeTemp(t, cfg), "--set", "scaling.enabled=false")
		if canI(t, agimoNS, release, appNS, "update", "deployments", "scale", "web") {
			t.Fatal("scaling.enabled=false still grants update on deployments/scale")
		}
		a := startAgimo(t, cfg, agimoOpts{kubeconfig: tokenKubeconfig(t, agimoNS, release)})
		a.getAsync(w.Host(), "/") // parks; answered 503 when agimo stops
		_, wakeErrs := wakeSeries(w.Host())
		eventually(t, 20*time.Second, "a wake-up error counted", func() bool { return a.metric(t, wakeErrs) >= 1 })
		line := a.waitLog(t, 5*time.Second, "wake up failed", "forbidden")
		t.Logf("wake-up without RBAC logged: %s", line)
		if got := w.replicas(t); got != 0 {
			t.Errorf("spec.replicas = %d; want 0", got)
		}
	})
}

// writeTemp writes content to a new file and returns its path.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("f-%d", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
