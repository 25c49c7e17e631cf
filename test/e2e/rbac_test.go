//go:build e2e

package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// helmBinary returns helm from the build cache (hack/controlplane/build.sh builds it
// once, ~4 min; hack/e2e.sh does that before the tests).
func helmBinary(t *testing.T) string {
	t.Helper()
	out, err := script("controlplane/build.sh", "helm")
	if err != nil {
		t.Skipf("no helm: %v", err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "helm=")
}

// kubectlBin is $KUBECTL (hack/e2e.sh sets it) or kubectl from PATH.
func kubectlBin() string {
	if k := os.Getenv("KUBECTL"); k != "" {
		return k
	}
	return "kubectl"
}

// kubectl runs kubectl as admin with stdin, failing the test on error.
func kubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command(kubectlBin(), append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// installChartRBAC applies exactly the chart's ServiceAccount and RBAC objects (rendered
// by helm with the given extra arguments, e.g. "--set", "rbac.namespaces={x}") into ns,
// removed when the test ends.
func installChartRBAC(t *testing.T, ns, release string, helmArgs ...string) {
	t.Helper()
	// helm built by `go install` assumes Kubernetes v1.20 offline; render for the real one.
	v, err := env.client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"template", release, filepath.Join(env.root, "charts", "agimo"), "--namespace", ns,
		"--kube-version", v.GitVersion,
		"--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"}
	args = append(args, helmArgs...)
	var stderr bytes.Buffer
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Stderr = &stderr
	rendered, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	kubectl(t, rendered, "apply", "-f", "-")
	t.Cleanup(func() {
		cmd := exec.Command(kubectlBin(), "--kubeconfig", env.kubeconfig, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
		cmd.Stdin = bytes.NewReader(rendered)
		cmd.Run()
	})
}

// tokenKubeconfig writes a kubeconfig that authenticates as the ServiceAccount ns/name
// with a bound token (what Agimo gets in a pod), not as admin.
func tokenKubeconfig(t *testing.T, ns, name string) string {
	t.Helper()
	tr, err := env.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx(t), name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	ca := env.rest.TLSClientConfig.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(env.rest.TLSClientConfig.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority-data: %s}}]
users: [{name: sa, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: sa}}]
current-context: c
`, env.rest.Host, base64.StdEncoding.EncodeToString(ca), tr.Status.Token)
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Agimo runs with exactly the chart's RBAC (ServiceAccount token, not admin): cluster-wide
// ClusterRole by default, or namespaced Roles. With a permission removed it does not get
// ready and says which permission is missing.
func TestChartRBAC(t *testing.T) {
	cases := []struct {
		name string
		set  func(workloadNS string) []string
	}{
		{"clusterrole", func(string) []string { return nil }},
		{"namespaced", func(ns string) []string { return []string{"--set", "rbac.namespaces={" + ns + "}"} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			agimoNS, appNS := newNamespace(t), newNamespace(t)
			release := "agimo-" + agimoNS[len(agimoNS)-4:] // unique: ClusterRoles are cluster-wide
			installChartRBAC(t, agimoNS, release, c.set(appNS)...)
			kc := tokenKubeconfig(t, agimoNS, release)

			w := createWorkload(t, appNS, "web", "deployment")
			pod := startPod(t, "web-rbac")
			a := startAgimo(t, "timeout = '60s'\n"+w.Config(), agimoOpts{kubeconfig: kc})
			parked := a.getAsync(w.Host(), "/")
			a.waitParked(t, w.Host(), 1)
			names := w.scale(t, 1)
			w.setEndpoints(t, readyEndpoint(pod, names[0]))
			expectFrom(t, awaitResult(t, parked, 30*time.Second), pod)
			a.stop(t)

			// Remove the EndpointSlice rule (the second rule in the chart).
			kind, ns := "clusterrole", ""
			if c.name == "namespaced" {
				kind, ns = "role", appNS
			}
			args := []string{"patch", kind, release, "--type=json", "-p", `[{"op":"remove","path":"/rules/1"}]`}
			if ns != "" {
				args = append(args, "-n", ns)
			}
			kubectl(t, nil, args...)
			b := startAgimo(t, "timeout = '60s'\n"+w.Config(), agimoOpts{kubeconfig: kc, noWait: true})
			line := b.waitLog(t, 30*time.Second, "forbidden by RBAC", "endpointslices")
			t.Logf("log line for the missing permission: %s", line)
			resp, err := plainClient.Get("http://" + b.MetricsAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Error("/readyz is 200 without permission to watch EndpointSlices")
				}
			}
		})
	}
}
