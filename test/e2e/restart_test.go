//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func apiserverUp() bool {
	c, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := env.client.CoreV1().Namespaces().Get(c, "default", metav1.GetOptions{})
	return err == nil
}

// kube-apiserver restarts mid-run: Agimo keeps serving services it knows are ready while
// the API server is down, parks requests for cold ones, and picks up changes made after
// the restart (its watches resume or relist).
func TestAPIServerRestart(t *testing.T) {
	if env.cpDir == "" {
		t.Skip("control plane not started by up.sh (set AGIMO_CP_DIR with AGIMO_E2E_KUBECONFIG)")
	}
	ns := newNamespace(t)
	warm := createWorkload(t, ns, "warm", "deployment")
	cold := createWorkload(t, ns, "cold", "statefulset")
	warmPod, coldPod := startPod(t, "warm-0"), startPod(t, "cold-0")
	a := startAgimo(t, "timeout = '90s'\n"+warm.Config()+cold.Config(), agimoOpts{})
	warmNames := warm.scale(t, 1)
	warm.setEndpoints(t, readyEndpoint(warmPod, warmNames[0]))
	eventually(t, 20*time.Second, "warm service ready", func() bool { return a.get(warm.Host(), "/").Status == 200 })

	restarted := make(chan error, 1)
	go func() {
		_, err := script("controlplane/restart-apiserver.sh", "3") // down for 3s
		restarted <- err
	}()
	eventually(t, 30*time.Second, "kube-apiserver to go down", func() bool { return !apiserverUp() })

	// While it is down: the warm service is served, a cold one parks.
	expectFrom(t, a.get(warm.Host(), "/during-outage"), warmPod)
	parked := a.getAsync(cold.Host(), "/parked-during-outage")
	a.waitParked(t, cold.Host(), 1)
	if apiserverUp() {
		t.Log("note: kube-apiserver came back before the outage checks finished")
	}

	select {
	case err := <-restarted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("kube-apiserver did not come back within 60s")
	}
	expectFrom(t, a.get(warm.Host(), "/after-restart"), warmPod)

	// Changes made after the restart reach Agimo: the cold service wakes...
	coldNames := cold.scale(t, 1)
	t0 := time.Now()
	cold.setEndpoints(t, readyEndpoint(coldPod, coldNames[0]))
	r := awaitResult(t, parked, 60*time.Second)
	expectFrom(t, r, coldPod)
	t.Logf("after restart: release latency %s", r.Done.Sub(t0).Round(time.Millisecond))

	// ...and the warm one's removal makes its requests park again.
	warm.deleteEndpoints(t)
	parkOne(t, a, warm.Host(), "/after-removal")
}
