//go:build node

package node

import (
	"context"
	"debug/elf"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestHelmDefaultValues: `helm install charts/agimo` with nothing but the image changed.
// The default config routes example.com to Deployment example/example, which starts at
// zero; scaling it the way KEDA would (kubectl scale) releases a request parked in Agimo.
func TestHelmDefaultValues(t *testing.T) {
	app(t, "example", "example")
	install(t, "agimo", "agimo", false)
	pods := agimoPods(t, "agimo", "agimo")
	if len(pods) != 2 {
		t.Fatalf("got %d agimo pods; want 2 (replicaCount)", len(pods))
	}
	for _, p := range pods {
		checkPod(t, p)
		if got, want := gomaxprocs(t, p), float64(runtime.NumCPU()); got != want {
			t.Errorf("go_gomaxprocs of %s = %v without a CPU limit; want %v (every CPU)", p.Name, got, want)
		}
	}
	ip := clusterIP(t, "agimo", "agimo")
	waitRouted(t, ip)
	code, body := parkThenScale(t, ip, "agimo", "agimo", "example.com", "example", "example", func() {
		kubectl(t, "scale", "-n", "example", "deployment/example", "--replicas=1")
	})
	if code != http.StatusOK || !strings.HasPrefix(body, "pod=example-") {
		t.Fatalf("got %d %q; want 200 from a pod of example", code, body)
	}
	phases := coldStarts(t, "agimo", "agimo", "example.com")
	logPhases(t, "kubectl scale (KEDA-style)", phases)
	for _, ph := range []string{"ready", "first_byte"} {
		if phases[ph][0] != 1 {
			t.Errorf("agimo_cold_start_seconds_count{phase=%q} = %v; want 1", ph, phases[ph][0])
		}
	}
	if phases["scale"][0] != 0 {
		t.Errorf("agimo_cold_start_seconds_count{phase=\"scale\"} = %v; want 0 (no wake)", phases["scale"][0])
	}
}

// TestHelmOriginalValues: the original Rust chart's documented values install unchanged.
func TestHelmOriginalValues(t *testing.T) {
	app(t, "example", "example")
	kubectl(t, "scale", "-n", "example", "deployment/example", "--replicas=1")
	install(t, "agimo-original", "agimo-original", false, filepath.Join(env.root, "charts/agimo/ci/original-values.yaml"))
	pods := agimoPods(t, "agimo-original", "agimo-original")
	if len(pods) == 0 {
		t.Fatal("no agimo pod")
	}
	for _, p := range pods {
		checkPod(t, p)
	}
	ip := clusterIP(t, "agimo-original", "agimo-original")
	waitRouted(t, ip)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code, body, err := get(ctx, ip, "example.com", "/original")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "path=/original") {
		t.Fatalf("got %d %q %v; want 200 from example", code, body, err)
	}
}

// TestWakeIdleAfterUpgrade: a `helm upgrade` that turns on wake and idle_after rolls the
// pods (checksum/config); a request through the Service then starts a real pod, is answered,
// and the Deployment goes back to zero after idle_after; twice.
func TestWakeIdleAfterUpgrade(t *testing.T) {
	const ns, rel, host = "wake", "agimo-wake", "wake.example.com"
	app(t, ns, "app")
	install(t, rel, rel, false, configValues(t, serviceConfig(host, ns, "")))
	before := map[string]bool{}
	for _, p := range agimoPods(t, rel, rel) {
		before[p.Name] = true
	}
	install(t, rel, rel, true, configValues(t, serviceConfig(host, ns, "wake = true\nidle_after = '6s'")))
	// Gone, not just terminating: a draining pod still serves what kube-proxy sends it
	// until its rules catch up (and the kubelet has updated its config volume, so it
	// would wake too), and its metrics go with it.
	waitPodsGone(t, rel, before, "old agimo pods gone after the upgrade")
	waitFor(t, 90*time.Second, "two agimo pods after the upgrade", func() (bool, error) {
		return len(agimoPods(t, rel, rel)) == 2, nil
	})
	ip := clusterIP(t, rel, rel)
	waitRouted(t, ip)
	// Two cold starts: from the helm upgrade's zero, and again after idle_after's.
	for round := 1; round <= 2; round++ {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		code, body, err := get(ctx, ip, host, "/wake")
		cancel()
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "pod=app-") {
			t.Fatalf("round %d: got %d %q %v; want 200 from a woken pod", round, code, body, err)
		}
		t.Logf("round %d: cold request through agimo's ClusterIP answered in %s (wake = true, real pod)", round, time.Since(start).Round(time.Millisecond))
		phases := coldStarts(t, rel, rel, host)
		for _, ph := range []string{"scale", "ready", "first_byte"} {
			if phases[ph][0] != float64(round) {
				t.Errorf("agimo_cold_start_seconds_count{phase=%q} = %v; want %d", ph, phases[ph][0], round)
			}
		}
		logPhases(t, fmt.Sprintf("wake = true, %d cold starts", round), phases)
		if w := metric(t, rel, rel, "agimo_wakeups_total", host); w != float64(round) {
			t.Errorf("agimo_wakeups_total = %v; want %d", w, round)
		}
		idleStart := time.Now()
		waitFor(t, 90*time.Second, "app back at zero replicas (idle_after = 6s)", func() (bool, error) {
			d, err := replicas(ns, "app")
			return err == nil && d.Spec.Replicas != nil && *d.Spec.Replicas == 0, err
		})
		t.Logf("idle_after = 6s: scaled to zero %s after the last request", time.Since(idleStart).Round(time.Second))
		// The next request must find the service cold: its pod gone, not just scaled down.
		waitFor(t, 60*time.Second, "app's pods gone", func() (bool, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			pods, err := env.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=app"})
			return err == nil && len(pods.Items) == 0, err
		})
	}
}

// checkPod checks that a Ready agimo pod runs under the chart's security context for real:
// the kernel's view of its process (uid 65532, no capabilities, no_new_privs, seccomp
// filter, read-only root), the image's (static binary, CA roots), and that its readiness
// probe is /readyz.
func checkPod(t *testing.T, p corev1.Pod) {
	t.Helper()
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		t.Errorf("pod %s not Ready", p.Name)
	}
	c := p.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("pod %s: readiness probe %+v; want httpGet /readyz", p.Name, c.ReadinessProbe)
	}
	pid := podProcess(t, p, "/agimo")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Uid": "65532", "Gid": "65532", "CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		w, ok := want[k]
		if !ok {
			continue
		}
		if f := strings.Fields(v); len(f) == 0 || f[0] != w {
			t.Errorf("pod %s: /proc/%d/status %s:%s; want %s", p.Name, pid, k, v, w)
		}
		delete(want, k)
	}
	if len(want) > 0 {
		t.Errorf("pod %s: /proc/%d/status lacks %v", p.Name, pid, want)
	}
	// The Dockerfile's image: a static binary (no ELF interpreter) and the CA roots.
	exe, err := elf.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range exe.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("pod %s: /agimo is dynamically linked", p.Name)
		}
	}
	exe.Close()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/etc/ssl/certs/ca-certificates.crt", pid)); err != nil {
		t.Errorf("pod %s: no CA roots in the image: %v", p.Name, err)
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", pid))
	if err != nil {
		t.Fatal(err)
	}
	rootRO := false
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == "/" {
			rootRO = strings.HasPrefix(f[3], "ro,") || f[3] == "ro"
		}
	}
	if !rootRO {
		t.Errorf("pod %s: root filesystem not mounted read-only:\n%s", p.Name, mounts)
	}
}

// podProcess finds the PID of the process running exe in pod p: its cgroup path names the
// pod's UID (kubelet's cgroupfs layout .../pod<uid>/<container>).
func podProcess(t *testing.T, p corev1.Pod, exe string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		cmd, err := os.ReadFile(f)
		if err != nil || !strings.HasPrefix(string(cmd), exe+"\x00") {
			continue
		}
		dir := filepath.Dir(f)
		cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
		if err != nil || !strings.Contains(string(cg), "pod"+string(p.UID)) {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(dir), "%d", &pid)
		return pid
	}
	t.Fatalf("no process %s in pod %s (uid %s)", exe, p.Name, p.UID)
	return 0
}

// parkThenScale sends a request for host through Agimo's ClusterIP ip, waits until Agimo
// has parked it, runs scale, and returns the response.
func parkThenScale(t *testing.T, ip, ns, release, host, appNS, appName string, scale func()) (int, string) {
	t.Helper()
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		code, body, err := get(ctx, ip, host, "/")
		done <- result{code, body, err}
	}()
	waitFor(t, 20*time.Second, "request parked in agimo", func() (bool, error) {
		return metric(t, ns, release, "agimo_parked_requests", host) == 1, nil
	})
	start := time.Now()
	scale()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("parked request answered %s after the scale-up of %s/%s (real pod start)", time.Since(start).Round(time.Millisecond), appNS, appName)
	return r.code, r.body
}

func logPhases(t *testing.T, how string, phases map[string][2]float64) {
	t.Helper()
	var b strings.Builder
	for _, ph := range []string{"scale", "ready", "first_byte"} {
		if v := phases[ph]; v[0] > 0 {
			fmt.Fprintf(&b, " %s=%.3fs", ph, v[1]/v[0])
		}
	}
	t.Logf("cold-start phases on the real node (%s; agimo_cold_start_seconds_sum/_count):%s", how, b.String())
}

// TestGOMAXPROCSFollowsCPULimit: with a CPU limit, the chart sets GOMAXPROCS to it (rounded
// up), which Go's runtime alone would not go below 2; without one, Go's default (every CPU of
// the node) stands, as TestHelmDefaultValues's pods show.
func TestGOMAXPROCSFollowsCPULimit(t *testing.T) {
	install(t, "agimo-cpu", "agimo-cpu", false,
		valuesFile(t, "replicaCount: 1\nresources:\n  requests: {cpu: 50m, memory: 64Mi}\n  limits: {cpu: 500m, memory: 256Mi}\n"))
	pods := agimoPods(t, "agimo-cpu", "agimo-cpu")
	if len(pods) != 1 {
		t.Fatalf("got %d agimo pods; want 1", len(pods))
	}
	if got := gomaxprocs(t, pods[0]); got != 1 {
		t.Errorf("go_gomaxprocs of %s = %v with a 500m CPU limit; want 1", pods[0].Name, got)
	}
}

// gomaxprocs reads go_gomaxprocs from p's metrics listener.
func gomaxprocs(t *testing.T, p corev1.Pod) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := get(ctx, p.Status.PodIP+":9090", "", "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics of %s: %d %v", p.Name, code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "go_gomaxprocs "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no go_gomaxprocs in the metrics of %s", p.Name)
	return 0
}
