//go:build e2e

// Package e2e runs the real agimo binary against a real kube-apiserver (etcd,
// kube-apiserver and kube-controller-manager on loopback, see hack/controlplane), with
// workload "pods" played by upstream servers in network namespaces (hack/netns.sh).
//
// Run it with hack/e2e.sh, or by hand (as root, for the network namespaces):
//
//	eval "$(hack/controlplane/up.sh)"
//	AGIMO_E2E_KUBECONFIG=$KUBECONFIG go test -tags e2e -race -count=1 -v -timeout 30m ./test/e2e/...
//
// Without AGIMO_E2E_KUBECONFIG, TestMain starts its own control plane in
// $AGIMO_CP_DIR (default /tmp/agimo-cp-e2e) and stops it at the end.
// There is no kubelet and no scheduler: kube-controller-manager creates Pods from
// Deployments and StatefulSets, they stay Pending, and the tests write the
// EndpointSlices a kubelet + endpointslice controller would. The Gateway API CRDs
// (standard channel, from the sigs.k8s.io/gateway-api module in go.mod) are applied once,
// by the first test that needs them (needGatewayAPI).
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// env is set up once by TestMain and read by every test.
var env struct {
	root       string // repository root
	agimo      string // the agimo binary under test
	upstream   string // the upstream (fake pod) binary
	grpcapp    string // the gRPC fake pod binary (test/grpcapp)
	kubeconfig string // admin kubeconfig
	cpDir      string // up.sh state dir; "" when the control plane is not ours to restart
	rest       *rest.Config
	client     kubernetes.Interface
}

func TestMain(m *testing.M) { os.Exit(mainE2E(m)) }

func mainE2E(m *testing.M) int {
	if os.Geteuid() != 0 {
		// Network namespaces need root. A suite that cannot run fails: an
		// "ok" that tested nothing would read as a pass (issue 10).
		return fail(errors.New("must run as root (the tests create network namespaces)"))
	}
	var err error
	if env.root, err = filepath.Abs("../.."); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(filepath.Join(env.root, "go.mod")); err != nil {
		return fail(fmt.Errorf("repository root not found at %s: %w", env.root, err))
	}
	tmp, err := os.MkdirTemp("", "agimo-e2e-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)

	if err := buildBinaries(tmp); err != nil {
		return fail(err)
	}
	stop, err := controlPlane()
	if err != nil {
		return fail(err)
	}
	defer stop()
	if env.rest, err = clientcmd.BuildConfigFromFlags("", env.kubeconfig); err != nil {
		return fail(err)
	}
	if env.client, err = kubernetes.NewForConfig(env.rest); err != nil {
		return fail(err)
	}

	// Namespaces left by a run that was killed would make "add" fail; start clean.
	netns("clean")
	defer netns("clean")
	return m.Run()
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "e2e setup:", err)
	return 1
}

// buildBinaries builds agimo (with -race when the tests run with -race, so races in the
// real binary under real traffic fail the suite), the upstream server and the gRPC app.
func buildBinaries(dir string) error {
	env.agimo = filepath.Join(dir, "agimo")
	env.upstream = filepath.Join(dir, "upstream")
	env.grpcapp = filepath.Join(dir, "grpcapp")
	args := []string{"build", "-o", env.agimo}
	if raceEnabled {
		args = append(args, "-race")
	}
	start := time.Now()
	for _, a := range [][]string{append(args, "."), {"build", "-tags", "e2e", "-o", env.upstream, "./test/e2e/upstream"},
		{"build", "-o", env.grpcapp, "./test/grpcapp"}} {
		cmd := exec.Command("go", a...)
		cmd.Dir = env.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(a, " "), err, out)
		}
	}
	fmt.Printf("e2e: built agimo (race=%v), upstream and grpcapp in %s\n", raceEnabled, time.Since(start).Round(time.Second))
	return nil
}

// controlPlane uses the API server named by AGIMO_E2E_KUBECONFIG, or starts one with
// hack/controlplane/up.sh. It returns how to stop what it started.
func controlPlane() (func(), error) {
	if kc := os.Getenv("AGIMO_E2E_KUBECONFIG"); kc != "" {
		env.kubeconfig = kc
		// The restart test needs the state dir of an up.sh control plane.
		if d := os.Getenv("AGIMO_CP_DIR"); d != "" {
			if _, err := os.Stat(filepath.Join(d, "apiserver.args")); err == nil {
				env.cpDir = d
			}
		}
		return func() {}, nil
	}
	env.cpDir = os.Getenv("AGIMO_CP_DIR")
	if env.cpDir == "" {
		env.cpDir = "/tmp/agimo-cp-e2e"
	}
	fmt.Printf("e2e: starting a control plane in %s (the first run builds it: ~15 min)\n", env.cpDir)
	start := time.Now()
	out, err := script("controlplane/up.sh")
	if err != nil {
		return nil, err
	}
	env.kubeconfig = strings.TrimPrefix(strings.TrimSpace(string(out)), "export KUBECONFIG=")
	fmt.Printf("e2e: control plane up in %s\n", time.Since(start).Round(time.Second))
	return func() {
		if os.Getenv("AGIMO_E2E_KEEP") == "1" {
			fmt.Printf("e2e: AGIMO_E2E_KEEP=1: control plane left running, KUBECONFIG=%s\n", env.kubeconfig)
			return
		}
		script("controlplane/down.sh")
	}, nil
}

// script runs hack/<name> with AGIMO_CP_DIR set, returning stdout; stderr goes to ours.
func script(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(env.root, "hack", name), args...)
	cmd.Env = append(os.Environ(), "AGIMO_CP_DIR="+env.cpDir)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("hack/%s %s: %w", name, strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

// netns runs hack/netns.sh; only used where failure is acceptable (cleanup).
func netns(args ...string) {
	cmd := exec.Command(filepath.Join(env.root, "hack", "netns.sh"), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: netns.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
