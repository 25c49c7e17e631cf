//go:build node

package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var listAll = metav1.ListOptions{}

// app creates namespace ns with Deployment name at zero replicas, running the test app
// (HTTP "pod=<name> host=<Host> path=<path>", WebSocket echo on /ws) behind Service name
// (port 80 -> 8080). The namespace is deleted when the test ends.
func app(t *testing.T, ns, name string) {
	t.Helper()
	deployApp(t, ns, name, upstreamImage, "{httpGet: {path: /healthz, port: http}, periodSeconds: 1}", "")
}

// grpcApp is app with the gRPC test app (test/grpcapp), ready by Kubernetes' gRPC probe,
// its Service port marked h2c (appProtocol kubernetes.io/h2c).
func grpcApp(t *testing.T, ns, name string) {
	t.Helper()
	deployApp(t, ns, name, grpcImage, "{grpc: {port: 8080}, periodSeconds: 1}", "kubernetes.io/h2c")
}

func deployApp(t *testing.T, ns, name, image, probe, appProtocol string) {
	t.Helper()
	if appProtocol != "" {
		appProtocol = ", appProtocol: " + appProtocol
	}
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[3]s, namespace: %[1]s}
spec:
  replicas: 0
  selector: {matchLabels: {app: %[3]s}}
  template:
    metadata: {labels: {app: %[3]s}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: %[2]s
        imagePullPolicy: Never
        args: ["-listen", ":8080", "-name", "$(POD_NAME)"]
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: %[4]s
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: %[3]s, namespace: %[1]s}
spec:
  selector: {app: %[3]s}
  ports: [{name: http, port: 80, targetPort: http%[5]s}]
`, ns, image, name, probe, appProtocol)
	f := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", f)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := run(ctx, env.kubectl, "delete", "namespace", ns, "--wait=true", "--ignore-not-found"); err != nil {
			t.Errorf("cleanup: %v\n%s", err, out)
		}
	})
}

// serviceConfig is one [[services]] entry routing host to Deployment and Service "app" in ns.
func serviceConfig(host, ns, extra string) string {
	return fmt.Sprintf(`timeout = '60s'
[[services]]
host = '%s'
type = 'deployment'
namespace = '%s'
name = 'app'
service_name = 'app'
service_port = 80
%s`, host, ns, extra)
}

// metric sums the sample name{host="host"} over release's pods (scraped at their IPs).
func metric(t *testing.T, ns, release, name, host string) float64 {
	t.Helper()
	var sum float64
	for _, p := range agimoPods(t, ns, release) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code, body, err := get(ctx, p.Status.PodIP+":9090", "", "/metrics")
		cancel()
		if err != nil || code != http.StatusOK {
			t.Fatalf("metrics of %s: %d %v", p.Name, code, err)
		}
		prefix := name + `{host="` + host + `"} `
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("metric line %q: %v", line, err)
				}
				sum += f
			}
		}
	}
	return sum
}

// install runs helm install (or upgrade, when upgrade is set) of charts/agimo as release
// in namespace ns with the given values files and the tree's image, waits for the rollout
// and registers the uninstall. Returns the pods' names once all are Ready.
func install(t *testing.T, release, ns string, upgrade bool, values ...string) {
	t.Helper()
	verb := "install"
	if upgrade {
		verb = "upgrade"
	}
	args := []string{verb, release, "charts/agimo", "-n", ns, "--wait", "--timeout", "120s",
		"--set", "image.repository=" + agimoImage, "--set", "image.tag=" + agimoTag, "--set", "image.pullPolicy=Never"}
	if !upgrade {
		args = append(args, "--create-namespace")
	}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	start := time.Now()
	helm(t, args...)
	t.Logf("helm %s %s --wait: %s", verb, release, time.Since(start).Round(time.Millisecond))
	if upgrade {
		return
	}
	t.Cleanup(func() {
		// Agimo's own log must show that its RBAC was enough, whatever the test did.
		checkNotForbidden(t, ns, release)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := run(ctx, env.helm, "uninstall", release, "-n", ns, "--wait"); err != nil {
			t.Errorf("cleanup: %v\n%s", err, out)
		}
		if out, err := run(ctx, env.kubectl, "delete", "namespace", ns, "--wait=true", "--ignore-not-found"); err != nil {
			t.Errorf("cleanup: %v\n%s", err, out)
		}
	})
}

// valuesFile writes YAML values to a file and returns its path.
func valuesFile(t *testing.T, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// configValues is a values file whose `config` is toml.
func configValues(t *testing.T, toml string) string {
	return valuesFile(t, "config: |\n  "+strings.ReplaceAll(strings.TrimSpace(toml), "\n", "\n  ")+"\n")
}

// agimoPods returns release's Running pods in ns (not terminating).
func agimoPods(t *testing.T, ns, release string) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out
}

func checkNotForbidden(t *testing.T, ns, release string) {
	t.Helper()
	for _, p := range agimoPods(t, ns, release) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		logs, err := run(ctx, env.kubectl, "logs", "-n", ns, p.Name)
		cancel()
		if err != nil {
			t.Errorf("logs of %s: %v", p.Name, err)
			continue
		}
		if strings.Contains(strings.ToLower(logs), "forbidden") {
			t.Errorf("agimo pod %s logged \"forbidden\" (RBAC not sufficient):\n%s", p.Name, logs)
		}
	}
}

// clusterIP returns the ClusterIP of Service name in ns.
func clusterIP(t *testing.T, ns, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := env.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// get sends GET http://addr/path with Host host and returns status and body.
func get(ctx context.Context, addr, host, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitRouted waits until kube-proxy routes the ClusterIP of Service name (it programs a
// new endpoint a little after the pod is Ready): /readyz on the metrics port answers 200.
func waitRouted(t *testing.T, ip string) {
	t.Helper()
	waitFor(t, 30*time.Second, "agimo's ClusterIP "+ip+" routed", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		code, _, err := get(ctx, ip+":9090", "", "/readyz")
		return code == http.StatusOK, err
	})
}

// coldStarts sums agimo_cold_start_seconds{host} over every agimo pod of release, scraped
// directly at each pod's IP: per phase, the count of cold starts and their total seconds.
func coldStarts(t *testing.T, ns, release, host string) map[string][2]float64 {
	t.Helper()
	out := map[string][2]float64{}
	for _, p := range agimoPods(t, ns, release) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code, body, err := get(ctx, p.Status.PodIP+":9090", "", "/metrics")
		cancel()
		if err != nil || code != http.StatusOK {
			t.Fatalf("metrics of %s: %d %v", p.Name, code, err)
		}
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			line := sc.Text()
			for i, suffix := range []string{"_count", "_sum"} {
				prefix := "agimo_cold_start_seconds" + suffix + `{host="` + host + `",phase="`
				if !strings.HasPrefix(line, prefix) {
					continue
				}
				rest := line[len(prefix):]
				phase, val, ok := strings.Cut(rest, `"} `)
				if !ok {
					continue
				}
				v, err := strconv.ParseFloat(val, 64)
				if err != nil {
					t.Fatalf("metric line %q: %v", line, err)
				}
				a := out[phase]
				a[i] += v
				out[phase] = a
			}
		}
	}
	return out
}

// replicas returns Deployment name's spec and ready replicas in ns.
func replicas(ns, name string) (*appsv1.Deployment, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return env.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
}

// waitPodsGone waits until none of the pods named in names is left in ns: gone, not just
// terminating.
func waitPodsGone(t *testing.T, ns string, names map[string]bool, what string) {
	t.Helper()
	waitFor(t, 90*time.Second, what, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if names[p.Name] {
				return false, nil
			}
		}
		return true, nil
	})
}
