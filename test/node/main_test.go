//go:build node

// Package node runs Agimo the way a user does: `helm install charts/agimo` on a real
// one-node Kubernetes (hack/node: kubelet, containerd, kube-proxy, CNI, CoreDNS beside the
// local control plane), with the image built from the tree, and real workload pods woken
// from zero. Run it with hack/node-e2e.sh, which brings the node up, runs this suite and
// tears the node down; by hand:
//
//	eval "$(hack/node/up.sh)"
//	AGIMO_NODE_KUBECONFIG=$KUBECONFIG go test -tags node -count=1 -v ./test/node/
//	hack/node/down.sh
package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var env struct {
	root       string // repository root (charts/agimo)
	kubeconfig string
	kubectl    string
	helm       string
	client     kubernetes.Interface
}

// Images imported by hack/node/up.sh (hack/node/images.sh builds them from the tree).
const (
	agimoImage    = "agimo.local/agimo"
	agimoTag      = "dev"
	upstreamImage = "agimo.local/upstream:dev"
	grpcImage     = "agimo.local/grpcapp:dev"
)

func TestMain(m *testing.M) { os.Exit(mainNode(m)) }

func mainNode(m *testing.M) int {
	// A suite that cannot run fails: an "ok" that tested nothing would read as a pass.
	need := map[string]*string{
		"AGIMO_NODE_KUBECONFIG": &env.kubeconfig,
		"AGIMO_NODE_KUBECTL":    &env.kubectl,
		"AGIMO_NODE_HELM":       &env.helm,
	}
	for k, p := range need {
		if *p = os.Getenv(k); *p == "" {
			return fail(fmt.Errorf("%s is not set: run hack/node-e2e.sh (it starts the node)", k))
		}
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("must run as root (it reads the containers' processes in /proc)"))
	}
	var err error
	if env.root, err = filepath.Abs("../.."); err != nil {
		return fail(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env.kubeconfig)
	if err != nil {
		return fail(err)
	}
	if env.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, err := env.client.CoreV1().Nodes().List(ctx, listAll)
	if err != nil || len(nodes.Items) == 0 {
		return fail(fmt.Errorf("no node: %d nodes, %v", len(nodes.Items), err))
	}
	return m.Run()
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "node e2e:", err)
	return 1
}

// run runs a command with the node's kubeconfig and returns its combined output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.kubeconfig)
	cmd.Dir = env.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := run(ctx, env.kubectl, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := run(ctx, env.helm, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond until it is true or timeout passes (then the test fails with what).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s (last error: %v)", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
